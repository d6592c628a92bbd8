"""The demo district's volunteers: names, personal data, home units, trainings and insurance."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ledger.catalogue import TrainingAudience, TrainingForm, TrainingLevel, UnitKind
from ledger.demo_units import DemoUnit
from ledger.registry import VolunteerApplication

# Surnames common in Sanming and Fujian, most frequent first.
SURNAMES = "陈林黄李张王吴刘郑杨罗邓谢肖曾邱赖余廖徐朱江魏范蔡周池詹严温"
SURNAME_WEIGHTS = [1 / (rank + 1) ** 0.9 for rank in range(len(SURNAMES))]
MALE = "伟强军平华建国明志文斌杰俊涛鹏辉勇超磊峰林海东晨宇浩凯毅"
FEMALE = "芳丽娟敏静秀英华玲燕霞萍红梅琳婷雪慧颖倩洁兰琴莉娜晓"
SKILLS = ("医疗护理", "法律咨询", "心理疏导", "文艺表演", "摄影摄像", "电脑网络", "外语", "驾驶",
          "教育辅导", "应急救护", "书法", "体育健身")
# Where volunteers are registered: (unit kind, weight).
HOME_KINDS = ((UnitKind.community, 45), (UnitKind.school, 20), (UnitKind.organisation, 15),
              (UnitKind.department, 15), (UnitKind.town, 2), (UnitKind.subdistrict, 3))
FIRST_DAY, LAST_DAY = date(2016, 1, 1), date(2017, 10, 31)
TRAINING_HOURS = {"province": 16.0, "city": 8.0, "district": 4.0, "community": 2.0}
LEVEL_ZH = {"province": "省级", "city": "市级", "district": "区级", "community": "社区"}
FORM_ZH = {"centralised": "集中性", "project": "项目化", "general": "普及性", "online": "网络化"}
AUDIENCE_ZH = {"leader": "志愿服务组织负责人", "core": "志愿者骨干", "general": "志愿者"}
INSURERS = ("中国人寿三明分公司", "中国人保财险三明分公司")


@dataclass(frozen=True)
class DemoVolunteer:
    """A volunteer to register; index order is registration order."""

    name: str
    home: str  # unit name
    registered_on: date
    personal: dict[str, Any]


def _name(rng: random.Random, female: bool) -> str:
    chars = FEMALE if female else MALE
    surname = rng.choices(SURNAMES, SURNAME_WEIGHTS)[0]
    given = rng.choice(chars) + (rng.choice(chars) if rng.random() < 0.8 else "")
    return surname + given


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _person(rng: random.Random, kind: UnitKind, on: date) -> dict[str, Any]:
    female = rng.random() < 0.56
    if kind is UnitKind.school and rng.random() < 0.6:  # students
        born = _day(rng, date(1999, 9, 1), date(2004, 8, 31))
    elif kind is UnitKind.community and rng.random() < 0.4:  # retirees serve in communities
        born = _day(rng, date(1947, 1, 1), date(1962, 12, 31))
    else:
        born = _day(rng, date(1963, 1, 1), date(1998, 12, 31))
    age = (on - born).days // 365
    party = {UnitKind.department: 0.55, UnitKind.organisation: 0.25}.get(kind, 0.18)
    roll = rng.random()
    if roll < (0.05 if age < 18 else party):
        status = "party_member"
    elif age <= 28 and roll < 0.75:
        status = "league_member"
    else:
        status = "masses"
    skills = rng.sample(SKILLS, k=rng.choice((0, 0, 1, 1, 2)))
    return {"birth_date": born, "gender": "female" if female else "male",
            "political_status": status, "skills": skills}


def make_volunteers(rng: random.Random, count: int, units: Sequence[DemoUnit]
                    ) -> list[DemoVolunteer]:
    """`count` volunteers spread over units, sorted by registration date."""
    by_kind = {kind: [u for u in units if u.kind is kind] for kind, _ in HOME_KINDS}
    kinds = [k for k, _ in HOME_KINDS]
    weights = [w for _, w in HOME_KINDS]
    # Most registered in 2016 through the "volunteer cloud"; the rest through October 2017.
    days = sorted(_day(rng, FIRST_DAY, date(2016, 12, 31)) if rng.random() < 0.7
                  else _day(rng, date(2017, 1, 1), LAST_DAY) for _ in range(count))
    volunteers = []
    for on in days:
        kind = rng.choices(kinds, weights)[0]
        home = rng.choice(by_kind[kind])
        person = _person(rng, kind, on)
        volunteers.append(DemoVolunteer(_name(rng, person["gender"] == "female"), home.name,
                                        on, person))
    return volunteers


def applications(volunteers: Sequence[DemoVolunteer], unit_ids: dict[str, str]
                 ) -> list[VolunteerApplication]:
    """The registration requests for the ledger."""
    return [VolunteerApplication(v.name, unit_ids[v.home], v.registered_on, dict(v.personal))
            for v in volunteers]


@dataclass(frozen=True)
class Training:
    """A training completion to record for volunteer `index`."""

    index: int
    level: str
    form: str
    audience: str
    title: str
    completed_on: date
    hours: float


def make_trainings(rng: random.Random, volunteers: Sequence[DemoVolunteer]) -> list[Training]:
    """About one volunteer in twenty trained in 2017; the first sixteen cover every level×form."""
    count = min(len(volunteers), max(16, len(volunteers) // 20))
    combos = [(lv.value, f.value) for lv in TrainingLevel for f in TrainingForm]
    trainings = []
    for n, index in enumerate(sorted(rng.sample(range(len(volunteers)), count))):
        level, form = combos[n] if n < len(combos) else (
            rng.choices([lv.value for lv in TrainingLevel], [1, 3, 10, 20])[0],
            rng.choice([f.value for f in TrainingForm]))
        audience = rng.choices([a.value for a in TrainingAudience], [1, 4, 5])[0]
        first = max(volunteers[index].registered_on, date(2017, 1, 1))
        title = f"{LEVEL_ZH[level]}{FORM_ZH[form]}{AUDIENCE_ZH[audience]}培训"
        hours = 2.0 if form == "online" else TRAINING_HOURS[level]
        trainings.append(Training(index, level, form, audience, title,
                                  _day(rng, first, date(2017, 12, 20)), hours))
    return trainings


def make_insured(rng: random.Random, count: int) -> list[tuple[int, str, str]]:
    """One volunteer in twenty insured for 2017: (index, policy reference, insurer)."""
    chosen = sorted(rng.sample(range(count), count // 20))
    return [(i, f"PAI-2017-{n + 1:06d}", rng.choice(INSURERS)) for n, i in enumerate(chosen)]


def make_transfers(rng: random.Random, volunteers: Sequence[DemoVolunteer],
                   units: Sequence[DemoUnit]) -> list[tuple[int, str, date]]:
    """One volunteer in fifty moves mid-2017 to another unit of the same kind."""
    kind_of = {u.name: u.kind for u in units}
    early = [i for i, v in enumerate(volunteers) if v.registered_on < date(2017, 3, 1)]
    moves = []
    for i in sorted(rng.sample(early, min(len(early), len(volunteers) // 50))):
        same = [u.name for u in units
                if u.kind is kind_of[volunteers[i].home] and u.name != volunteers[i].home]
        if same:
            moves.append((i, rng.choice(same), _day(rng, date(2017, 4, 1), date(2017, 9, 30))))
    return moves


def run_singles(items: Sequence[Any], write: Callable[[Any], object],
                tick: Callable[[int], None]) -> int:
    """Write items one use-case call each, ticking progress every 100; returns the count."""
    for n, item in enumerate(items, 1):
        write(item)
        if n % 100 == 0 or n == len(items):
            tick(n)
    return len(items)
