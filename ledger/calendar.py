"""District time: every service date, year and quarter is read in Asia/Shanghai."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

DISTRICT_TZ = ZoneInfo("Asia/Shanghai")
MAX_SESSION = timedelta(hours=24)


def now() -> datetime:
    """The current instant, timezone-aware."""
    return datetime.now(tz=UTC)


def service_date(started_at: datetime) -> date:
    """The calendar date in district time on which a session counts."""
    return started_at.astimezone(DISTRICT_TZ).date()


def quarter_of(day: date) -> int:
    """The quarter (1–4) that a date falls in."""
    return (day.month - 1) // 3 + 1


def whole_minutes(started_at: datetime, ended_at: datetime) -> int:
    """Served time in whole minutes, truncated."""
    return int((ended_at - started_at).total_seconds() // 60)


def year_end(year: int) -> date:
    """31 December of a year, the day award criteria are taken on."""
    return date(year, 12, 31)
