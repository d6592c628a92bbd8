"""The demo district's units as the 2017 Meilie plan names them, and who organises each program.

Units the plan names (towns, subdistricts, departments, stations, library, cultural centre) are
taken from it; communities, villages, schools, civilized units and teams are plausible names
of the district's kind, not an authoritative list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.application import Ledger
from ledger.base import Written
from ledger.catalogue import UnitKind
from ledger.provenance import Origin

DISTRICT = "梅列区"


@dataclass(frozen=True)
class DemoUnit:
    """One unit to register: name, kind, parent's name and civilized level."""

    name: str
    kind: UnitKind
    parent: str | None = None
    level: str | None = None


def _many(kind: UnitKind, parent: str, names: str, levels: str = "") -> list[DemoUnit]:
    """Units of one kind under one parent; `levels` gives each one's civilized level (or -)."""
    level_of = {"d": "district", "c": "city", "p": "province", "n": "national"}
    marks = levels.ljust(len(names.split()), "-")
    return [DemoUnit(name, kind, parent, level_of.get(mark))
            for name, mark in zip(names.split(), marks, strict=True)]


K = UnitKind
AREAS = {  # town or subdistrict -> its communities (社区) or villages (村)
    "列东街道": ("新街社区 江滨社区 东安社区 三路社区 崇荣社区 东乾社区", "pcd-d-"),
    "列西街道": ("列西社区 高岩社区 翠竹社区 梅岭社区 龙岗社区", "cd-d-"),
    "徐碧街道": ("徐碧社区 乾龙社区 碧玉社区 北山社区 复康社区", "dc-d-"),
    "陈大镇": ("陈大村 瑞云村 下洋村 台江村", "d---"),
    "洋溪镇": ("洋溪村 安里村 梨树村", "-d-"),
}
DEPARTMENTS = (
    "区委文明办 区委宣传部 区老干部局 区民政局 区妇联 团区委 区教育局 区人社局 区住建局 "
    "区司法局 区总工会 区残联 区文广局 区科协 区旅游局 区卫计局 区环保局 区消防大队 "
    "梅列公安分局 区综治办 区交通局 区农林水利局 区经贸局 区城管局 区直机关党工委"
)
DEPARTMENT_LEVELS = "ccpcccpdcddcccdcdpccdcdcd"
CIVILIZED = ("梅列供电公司 梅列区人民法院 梅列区人民检察院 农商银行梅列支行 梅列移动营业部 "
             "梅列区医院 梅列烟草专卖局")
SCHOOLS = ("梅列区实验小学 三明市第八中学 列东中学 列西小学 徐碧小学 陈大中心小学 "
           "洋溪中心小学 梅列区实验幼儿园")
TEAMS = ("梅列区志愿者协会 梅列区青年志愿者服务队 梅列区巾帼志愿服务队 梅列区红十字志愿服务队 "
         "梅列区蓝天救援队 梅列区法律服务志愿队 梅列区文体志愿服务队 梅列区科技志愿服务队 "
         "梅列区医疗卫生志愿服务队 梅列区环保志愿服务队 梅列区消防志愿服务队 "
         "梅列区网络文明传播志愿者队 梅列区平安巡防志愿队 三明国际大酒店 梅列中国旅行社")
STATIONS = ("起飞公园驿站", "青少年宫广场驿站")
LIBRARY_AND_CENTRE = ("区图书馆", "区文化馆")


def district_units() -> list[DemoUnit]:
    """Every unit of the demo district, parents before children."""
    units = [DemoUnit(DISTRICT, K.district)]
    for area in AREAS:
        units.append(DemoUnit(area, K.town if area.endswith("镇") else K.subdistrict, DISTRICT))
    units += _many(K.department, DISTRICT, DEPARTMENTS, DEPARTMENT_LEVELS)
    units += _many(K.organisation, DISTRICT, CIVILIZED, "pppccdc")
    units += _many(K.school, DISTRICT, SCHOOLS, "pccddd-d")
    units += _many(K.organisation, "区委文明办", TEAMS)
    for area, (names, levels) in AREAS.items():
        units += _many(K.community, area, names, levels)
    units += [DemoUnit(name, K.station, "区委文明办") for name in STATIONS]
    units += [DemoUnit(name, K.station, "区文广局", "city") for name in LIBRARY_AND_CENTRE]
    return units


# Who organises each program: unit names, or a group (@towns, @civilized, @schools,
# @communities, @teams), following the plan's 责任单位 for each item.
ORGANISERS: dict[str, tuple[str, ...]] = {
    "A1": ("@towns", "区老干部局", "区民政局", "@civilized", "@communities"),
    "A2": ("@towns", "区妇联", "区教育局", "团区委", "@schools", "@communities"),
    "A3": ("@towns", "区人社局", "区住建局", "区司法局", "区总工会", "区教育局", "@civilized"),
    "A4": ("@towns", "区残联", "@communities"),
    "B1": ("区委宣传部", "区委文明办", "区文广局", "区科协", "区图书馆", "区文化馆"),
    "B2": ("区旅游局", "三明国际大酒店", "梅列中国旅行社"),
    "B3": ("区司法局", "区文广局", "区科协", "区卫计局", "区环保局", "区消防大队",
           "梅列区法律服务志愿队", "梅列区医疗卫生志愿服务队", "梅列区消防志愿服务队"),
    "B4": ("团区委", "区文广局", "梅列区青年志愿者服务队", "梅列区文体志愿服务队"),
    "B5": ("区委文明办", "@towns", "@civilized"),
    "B6": ("区委文明办", "@civilized", "@schools", "梅列区网络文明传播志愿者队"),
    "B7": ("区委文明办", "@civilized", "@schools", "@communities"),
    "B8": ("梅列公安分局", "区综治办", "区交通局", "区旅游局", "梅列区平安巡防志愿队",
           "@civilized"),
    "C1": ("@towns", "区农林水利局", "区住建局", "@civilized", "@schools", "@communities"),
    "C2": ("@towns", "区环保局", "区住建局", "区经贸局", "@schools", "@communities"),
    "C3": ("@towns", "区农林水利局", "区环保局", "梅列区环保志愿服务队"),
    "C4": ("区城管局", "区委文明办", "区直机关党工委", "区卫计局", "区教育局", "@civilized",
           "@communities"),
}


def organisers(program_code: str, units: Sequence[DemoUnit]) -> list[str]:
    """The names of the units that may organise a program's activities."""
    groups = {
        "@towns": [u.name for u in units if u.kind in (K.town, K.subdistrict)],
        "@civilized": [u.name for u in units if u.level and u.kind in (K.department,
                                                                       K.organisation)],
        "@schools": [u.name for u in units if u.kind is K.school and u.level],
        "@communities": [u.name for u in units if u.kind is K.community],
        "@teams": [u.name for u in units if u.kind is K.organisation and u.parent != DISTRICT],
    }
    names: list[str] = []
    for entry in ORGANISERS[program_code]:
        names += groups[entry] if entry.startswith("@") else [entry]
    return list(dict.fromkeys(names))


def register_units(ledger: Ledger, origin: Origin, units: Sequence[DemoUnit]) -> dict[str, str]:
    """Register the units in order; returns unit ids by name."""
    ids: dict[str, str] = {}
    for unit in units:
        written: Written = ledger.register_unit(
            origin, unit.name, unit.kind.value, ids.get(unit.parent or ""), unit.level)
        ids[unit.name] = written.id
    return ids
