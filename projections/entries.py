"""One stored event as the history and the event feed show it, personal data masked by default.

`valid_time` is the served interval an event states: `{started_at, ended_at}` for
`ServiceSession.Recorded` and `ServiceSession.Corrected`, else None (a void states the minutes
and service date it takes off the record, not an interval). `actor` and `source` are lifted out
of `data`. The feed adds `state` (the stored bytes, base64) so an auditor can recompute the
audit leaf, but only when masking changes nothing: bytes holding an unmasked phone or id
number are shown to callers allowed to see them unmasked, and to no one else.
"""

from __future__ import annotations

import base64
from typing import Any

from ledger.privacy import masked_event_data
from projections.feed import FeedEvent

_LIFTED = ("actor", "source")


def valid_time(event: FeedEvent) -> dict[str, str] | None:
    """The served interval a session event states, else None."""
    if event.aggregate != "ServiceSession":
        return None
    started, ended = event.data.get("started_at"), event.data.get("ended_at")
    if started is None or ended is None:
        return None
    return {"started_at": started, "ended_at": ended}


def entry(event: FeedEvent, unmasked: bool) -> dict[str, Any]:
    """An event as the volunteer history shows it."""
    data = {k: v for k, v in event.data.items() if k not in _LIFTED}
    return {
        "position": event.position,
        "type": event.type,
        # Which aggregate: of two alike sessions on a day, the one a void concerns (bb20 F4).
        "originator_id": event.originator_id,
        "recorded_at": event.recorded_at,
        "actor": event.data.get("actor"),
        "source": event.data.get("source"),
        "valid_time": valid_time(event),
        "data": data if unmasked else masked_event_data(data),
    }


def feed_entry(event: FeedEvent, unmasked: bool) -> dict[str, Any]:
    """An event as the event feed shows it: the history's fields and what the leaf is made of."""
    shown = entry(event, unmasked)
    safe = unmasked or masked_event_data(event.data) == event.data
    return {
        **shown,
        "version": event.version,
        "topic": event.topic,
        "state": base64.b64encode(event.state).decode("ascii") if safe else None,
    }
