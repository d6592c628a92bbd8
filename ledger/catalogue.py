"""The fixed vocabulary of the district plan: programs, unit kinds, trainings, awards, stars."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from ledger.errors import InvalidField


class Category(StrEnum):
    A = "A"  # 关爱他人 caring for others
    B = "B"  # 关爱社会 caring for society
    C = "C"  # 关爱自然 caring for nature


CATEGORY_NAMES: dict[Category, tuple[str, str]] = {
    Category.A: ("关爱他人", "caring for others"),
    Category.B: ("关爱社会", "caring for society"),
    Category.C: ("关爱自然", "caring for nature"),
}


@dataclass(frozen=True)
class Program:
    code: str
    name_zh: str
    name_en: str
    responsible: tuple[str, ...]

    @property
    def category(self) -> Category:
        return Category(self.code[0])


PROGRAMS: dict[str, Program] = {
    p.code: p
    for p in (
        Program("A1", "关爱空巢老人", "empty-nest elderly",
                ("各镇、街道", "区老干部局", "区民政局", "各级文明单位")),
        Program("A2", "关爱留守儿童", "left-behind children", ("区妇联", "区教育局", "团区委")),
        Program("A3", "关爱困难职工（农民工）", "struggling and migrant workers",
                ("区人社局", "区住建局", "区司法局", "区工会", "区教育局")),
        Program("A4", "关爱残疾人", "people with disabilities", ("区残联",)),
        Program("B1", "公共文化设施", "public cultural facilities",
                ("区委宣传部", "区委文明办", "区文广局", "区科协", "区图书馆", "区文化馆")),
        Program("B2", "文明旅游伴我行", "civilised tourism", ("区旅游局", "旅行社", "星级宾馆")),
        Program("B3", "专业志愿服务队进社区", "professional teams into communities",
                ("区司法局", "区文广局", "区科协", "区卫计局", "区环保局", "区消防大队")),
        Program("B4", "大型社会活动", "large events, conferences and sports",
                ("团区委", "区文广局")),
        Program("B5", "大型便民利民", "large convenience-service days",
                ("区委文明办", "各镇、街道")),
        Program("B6", "网络文明传播", "online civilisation",
                ("区委文明办", "各级文明单位、文明学校")),
        Program("B7", "迎金砖会晤", "BRICS summit welcome actions", ("区委文明办", "各级文明单位")),
        Program("B8", "维护社会秩序", "public order and traffic guidance",
                ("梅列公安分局", "区综治办", "区交通局")),
        Program("C1", "植树造林", "tree planting and care", ("区农林水利局", "区住建局")),
        Program("C2", "普及环保知识", "environmental education",
                ("区环保局", "区住建局", "区经贸局")),
        Program("C3", "保护山川河流", "rivers and water sources", ("区农林水利局", "区环保局")),
        Program("C4", "清洁环境卫生", "clean-up campaigns", ("区城管局", "区委文明办", "区卫计局")),
    )
}


class UnitKind(StrEnum):
    district = "district"
    town = "town"
    subdistrict = "subdistrict"
    community = "community"
    department = "department"
    school = "school"
    organisation = "organisation"
    station = "station"


class CivilizedLevel(StrEnum):
    district = "district"
    city = "city"
    province = "province"
    national = "national"


class PoliticalStatus(StrEnum):
    party_member = "party_member"
    league_member = "league_member"
    masses = "masses"


class Gender(StrEnum):
    female = "female"
    male = "male"


class TrainingLevel(StrEnum):
    province = "province"
    city = "city"
    district = "district"
    community = "community"


class TrainingForm(StrEnum):
    centralised = "centralised"
    project = "project"
    general = "general"
    online = "online"


class TrainingAudience(StrEnum):
    leader = "leader"
    core = "core"
    general = "general"


class AwardKind(StrEnum):
    most_beautiful_volunteer = "most_beautiful_volunteer"
    best_organisation = "best_organisation"
    best_project = "best_project"
    best_community = "best_community"


class Role(StrEnum):
    admin = "admin"
    recorder = "recorder"
    committee = "committee"
    auditor = "auditor"


# Cumulative recorded hours for each star (★ … ★★★★★), from the national record rules.
STAR_THRESHOLD_HOURS: tuple[int, ...] = (100, 300, 600, 1000, 1500)


def star_level(total_minutes: int) -> int:
    """The star level (0–5) that a cumulative total of recorded minutes reaches."""
    return sum(1 for hours in STAR_THRESHOLD_HOURS if total_minutes >= hours * 60)


E = TypeVar("E", bound=StrEnum)


def member(kind: type[E], field: str, value: Any) -> E:
    """The member of one of these enumerations a request's value names; else InvalidField
    naming `field` and listing them all."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidField(f"{field} must be one of: {', '.join(kind)}", field) from None
