"""District time: every service date, year and quarter is read in Asia/Shanghai."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.errors import InvalidField

DISTRICT_TZ = ZoneInfo("Asia/Shanghai")
MAX_SESSION = timedelta(hours=24)
MIN_SESSION = timedelta(minutes=1)  # minutes are whole: a shorter session counts none
# The days a record of this ledger may name: none before 1900, and instants no later than the
# year 2999 (an activity may be planned ahead; no date near year 1 or 9999, where turning an
# instant into district time or UTC overflows Python's calendar).
EARLIEST_DAY = date(1900, 1, 1)
LATEST_YEAR = 2999
# The years an award, its rules or an insurance cover may name.
MIN_YEAR, MAX_YEAR = 2000, 2100
# The UTC offsets civil time uses anywhere (UTC-12:00, Baker Island, to UTC+14:00, Kiribati).
# RFC 3339's grammar admits up to ±23:59; an offset outside this range is a client's mistake
# (a sign or an hour typed wrong), and it would silently move a session's service date.
OFFSET_RANGE = (timedelta(hours=-12), timedelta(hours=14))


def check_instant(name: str, value: datetime) -> None:
    """An instant a record may hold: with a UTC offset, from 1900 to 2999 (InvalidField)."""
    offset = value.utcoffset()  # None for a naive instant
    if offset is None:
        raise InvalidField(f"{name} must carry a UTC offset (RFC 3339)", name)
    if not OFFSET_RANGE[0] <= offset <= OFFSET_RANGE[1]:
        minutes = abs(int(offset.total_seconds())) // 60
        written = f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
        raise InvalidField(f"{name} has the UTC offset {written}; the offsets in use lie "
                           "between -12:00 and +14:00", name)
    if EARLIEST_DAY.year < value.year < LATEST_YEAR:
        return  # an offset (under a day) cannot move it out of range: no conversion needed
    try:
        years = {value.astimezone(UTC).year, value.astimezone(DISTRICT_TZ).year}
    except OverflowError:
        years = {0}
    if min(years) < EARLIEST_DAY.year or max(years) > LATEST_YEAR:
        raise InvalidField(f"{name} must lie between {EARLIEST_DAY.year} and {LATEST_YEAR}",
                           name)


def check_year(year: int) -> int:
    """A year an award, its rules or an insurance cover may name: a whole number from
    MIN_YEAR to MAX_YEAR (InvalidField naming `year`)."""
    if isinstance(year, bool) or not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidField(f"year must be a whole number from {MIN_YEAR} to {MAX_YEAR}", "year")
    return year


def check_day(name: str, value: date, today: date) -> None:
    """A day a record may name: not in the future, not before 1900 (InvalidField)."""
    if value > today:
        raise InvalidField(f"{name} lies in the future", name)
    if value < EARLIEST_DAY:
        raise InvalidField(f"{name} must not lie before {EARLIEST_DAY.isoformat()}", name)


def now() -> datetime:
    """The current instant, timezone-aware."""
    return datetime.now(tz=UTC)


def district_today() -> date:
    """Today's date in district time."""
    return now().astimezone(DISTRICT_TZ).date()


def service_date(started_at: datetime) -> date:
    """The calendar date in district time on which a session counts."""
    return started_at.astimezone(DISTRICT_TZ).date()


def whole_minutes(started_at: datetime, ended_at: datetime) -> int:
    """Served time in whole minutes, truncated."""
    return int((ended_at - started_at).total_seconds() // 60)

