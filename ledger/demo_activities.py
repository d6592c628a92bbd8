"""The demo's 2017 calendar: activities of the 16 programs with the plan's seasons, and sessions.

Each day has three slots (08–12, 14–18, 19–22 district time); a session lies inside one slot of
its activity and a bitmap marks each volunteer's taken slots, so no volunteer's sessions overlap.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate

from ledger.calendar import DISTRICT_TZ
from ledger.demo_units import LIBRARY_AND_CENTRE, STATIONS, DemoUnit, organisers
from ledger.demo_volunteers import DemoVolunteer

YEAR_START = date(2017, 1, 1)
DAYS = [YEAR_START + timedelta(days=n) for n in range(365)]
SLOTS = {0: (8, 12), 1: (14, 18), 2: (19, 22)}
LEI_FENG_DAY, VOLUNTEER_DAY = date(2017, 3, 5), date(2017, 12, 5)
# program -> (share of activities, relative attendance, slots); (0, 1) is a whole-day event.
MIX: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "A1": (12, 10, (0, 1)), "A2": (8, 12, (1,)), "A3": (5, 12, (0,)), "A4": (5, 10, (0,)),
    "B1": (8, 8, (1,)), "B2": (4, 12, (0,)), "B3": (8, 15, (0,)), "B4": (3, 60, (0, 1)),
    "B5": (2, 150, (0, 1)), "B6": (6, 15, (2,)), "B7": (4, 25, (1,)), "B8": (10, 10, (2,)),
    "C1": (3, 50, (0, 1)), "C2": (6, 15, (1,)), "C3": (4, 20, (0,)), "C4": (12, 25, (0,)),
}
MINIMUM = {"B5": 2, "B6": 4}  # both volunteer days; one online-civilisation round per quarter
TITLES = {
    "A1": "“一对一”结对帮扶空巢老人", "A2": "“爱心妈妈”关爱留守儿童", "A3": "关爱农民工返乡服务",
    "A4": "扶残助残 共奔小康", "B1": "公共文化设施学雷锋服务", "B2": "文明旅游伴我行",
    "B3": "专业志愿服务队进社区", "B4": "大型赛会志愿服务", "B5": "大型便民利民服务",
    "B6": "网络文明传播", "B7": "迎金砖会晤，志愿者在行动", "B8": "文明交通引导与治安巡查",
    "C1": "植绿护绿·建设美丽新三明", "C2": "环保知识进社区", "C3": "关爱母亲河",
    "C4": "清洁环境卫生大扫除",
}


@dataclass(frozen=True)
class DemoActivity:
    """An activity to plan: program, organiser and station names, title, day, slots, seats."""

    program: str
    organiser: str
    station: str | None
    title: str
    day: date
    slots: tuple[int, ...]
    seats: int

    def window(self) -> tuple[datetime, datetime]:
        """The activity's start and end, district time."""
        first, last = SLOTS[self.slots[0]][0], SLOTS[self.slots[-1]][1]
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=DISTRICT_TZ)
        return start + timedelta(hours=first), start + timedelta(hours=last)


class _Days:
    """Picks days of 2017: weekends twice as likely, March (学雷锋月) 2.5×, December 1.5×."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        weights = [(2.0 if d.weekday() >= 5 else 1.0) * {3: 2.5, 12: 1.5}.get(d.month, 1.0)
                   for d in DAYS]
        self.cum = list(accumulate(weights))

    def between(self, first: str, last: str) -> date:
        lo = (date.fromisoformat(f"2017-{first}") - YEAR_START).days
        hi = (date.fromisoformat(f"2017-{last}") - YEAR_START).days
        base = self.cum[lo - 1] if lo else 0.0
        point = base + self.rng.random() * (self.cum[hi] - base)
        return DAYS[min(bisect_right(self.cum, point, lo, hi + 1), hi)]

    def season(self, program: str, n: int) -> date:
        """A day for the n-th activity of a program, following the plan's seasons."""
        r, pick = self.rng.random(), self.between
        if program == "B5":
            peak = LEI_FENG_DAY if (n % 2 == 0) else VOLUNTEER_DAY
            return peak if n < 2 or r < 0.6 else pick(*(("03-01", "03-31") if peak.month == 3
                                                        else ("12-01", "12-10")))
        if program == "C1":
            return date(2017, 3, 12) if r < 0.25 else pick("03-01", "04-30")
        if program == "B6":
            quarter = n % 4
            return pick(f"{quarter * 3 + 1:02d}-01", ("03-31", "06-30", "09-30", "12-31")[quarter])
        seasons = {"B7": [(1.0, "06-01", "09-05")],
                   "A2": [(0.45, "07-01", "08-31"), (0.2, "01-15", "02-12")],
                   "B2": [(0.25, "04-29", "05-01"), (0.25, "10-01", "10-08")],
                   "A1": [(0.2, "10-25", "10-31"), (0.1, "01-16", "01-27")],
                   "A3": [(0.3, "01-10", "02-10")]}
        for share, first, last in seasons.get(program, []):
            if r < share:
                return pick(first, last)
            r -= share
        return pick("01-01", "12-31")


def _seat_counts(rng: random.Random, weights: list[float], total: int) -> list[int]:
    """Split `total` seats in proportion to the weights (largest remainders, at least one)."""
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    seats = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (seats[i] - exact[i], i))
    for i in order[: total - sum(seats)]:
        seats[i] += 1
    return seats


def _capped(seats: list[int], caps: list[int]) -> list[int]:
    """Move seats above an activity's cap (a small district's whole roll) to the others."""
    excess = sum(max(0, s - c) for s, c in zip(seats, caps, strict=True))
    seats = [min(s, c) for s, c in zip(seats, caps, strict=True)]
    room = [c - s for s, c in zip(seats, caps, strict=True)]
    free = sum(room)
    if excess and free:
        share = [r * min(excess, free) // free for r in room]
        seats = [s + extra for s, extra in zip(seats, share, strict=True)]
    return seats


def make_activities(rng: random.Random, sessions: int, units: Sequence[DemoUnit],
                    volunteers: int) -> list[DemoActivity]:
    """About one activity per forty sessions, every program at least once, in date order."""
    days = _Days(rng)
    target = max(21, round(sessions / 40))
    share_total = sum(share for share, _, _ in MIX.values())
    drafts: list[tuple[str, str, str | None, date, float]] = []
    for code, (share, size, _) in MIX.items():
        choices = organisers(code, units)
        for n in range(max(MINIMUM.get(code, 1), round(target * share / share_total))):
            day = days.season(code, n)
            peak = day in (LEI_FENG_DAY, VOLUNTEER_DAY)
            station: str | None = None
            if code == "B1":
                station = rng.choice(LIBRARY_AND_CENTRE)
            elif rng.random() < (0.6 if code == "B5" else 0.15):
                station = rng.choice(STATIONS)
            drafts.append((code, rng.choice(choices), station, day,
                           size * rng.uniform(0.4, 1.6) * (3 if peak else 1)))
    seats = _seat_counts(rng, [d[4] for d in drafts], sessions)
    seats = _capped(seats, [max(1, volunteers * len(MIX[d[0]][2]) // 4) for d in drafts])
    activities = []
    for (code, organiser, station, day, _), n in zip(drafts, seats, strict=True):
        title = TITLES[code]
        if day == LEI_FENG_DAY:
            title = f"3·5学雷锋纪念日·{title}"
        elif day == VOLUNTEER_DAY:
            title = f"12·5国际志愿者日·{title}"
        elif code == "B6":
            title = f"{title} 2017年第{(day.month - 1) // 3 + 1}季度"
        activities.append(DemoActivity(code, organiser, station, f"{title}（{organiser}）",
                                       day, MIX[code][2], n))
    activities.sort(key=lambda a: (a.day, a.slots, a.program, a.organiser, a.title))
    return activities


class SessionPlanner:
    """Draws each activity's volunteers (mostly its own unit's, veterans more often)."""

    TRIES = 8

    def __init__(self, rng: random.Random, volunteers: Sequence[DemoVolunteer],
                 units: Sequence[DemoUnit]) -> None:
        self.rng = rng
        self.busy = bytearray((len(volunteers) * 365 * 3 + 7) // 8)
        parent = {u.name: u.parent for u in units}
        self.pools: dict[str, list[int]] = {u.name: [] for u in units}
        for i, v in enumerate(volunteers):
            self.pools[v.home].append(i)
            if parent[v.home] in self.pools:
                self.pools[parent[v.home] or ""].append(i)
        self.everyone = list(range(len(volunteers)))
        self.registered = [v.registered_on for v in volunteers]

    def _draw(self, pool: list[int], day: date, skew: float) -> int | None:
        # Pools list volunteers in registration order: the first k had registered by `day`.
        k = bisect_right(pool, day, key=lambda i: self.registered[i])
        return pool[int(k * self.rng.random() ** skew)] if k else None

    def sessions(self, activity: DemoActivity) -> Iterator[tuple[int, datetime, datetime]]:
        """(volunteer index, start, end) for each seat that found a free volunteer."""
        rng, doy = self.rng, (activity.day - YEAR_START).days
        own = self.pools.get(activity.organiser) or self.everyone
        for _ in range(activity.seats):
            for attempt in range(self.TRIES):
                # Veterans of the organiser's own unit first; later tries anyone registered.
                late = attempt >= self.TRIES // 2
                pool = own if rng.random() < 0.7 and not late else self.everyone
                index = self._draw(pool, activity.day, 1.0 if late else 1.6)
                slot = rng.choice(activity.slots)
                bit = (index or 0) * 1095 + doy * 3 + slot
                if index is not None and not self.busy[bit >> 3] & (1 << (bit & 7)):
                    self.busy[bit >> 3] |= 1 << (bit & 7)
                    yield (index, *self._times(activity.day, slot))
                    break

    def _times(self, day: date, slot: int) -> tuple[datetime, datetime]:
        """Mostly 1–4 h (a few shorter), inside the slot, starting on a five-minute mark."""
        rng = self.rng
        first, last = SLOTS[slot]
        room = (last - first) * 60
        minutes = (rng.randint(30, 59) if rng.random() < 0.06
                   else int(rng.triangular(60, room, 120)))
        if rng.random() < 0.8:
            minutes -= minutes % 5
        offset = rng.randrange((room - minutes) // 5 + 1) * 5
        start = datetime(day.year, day.month, day.day, first, tzinfo=DISTRICT_TZ)
        start += timedelta(minutes=offset)
        return start, start + timedelta(minutes=minutes)


__all__ = ["DemoActivity", "SessionPlanner", "make_activities"]
