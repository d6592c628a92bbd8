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


def whole_minutes(started_at: datetime, ended_at: datetime) -> int:
    """Served time in whole minutes, truncated."""
    return int((ended_at - started_at).total_seconds() // 60)

