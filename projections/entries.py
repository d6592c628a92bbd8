"""One stored event as the history and the event feed show it, personal data masked by default.

`valid_time` is the served interval an event states: `{started_at, ended_at}` for
`ServiceSession.Recorded` and `ServiceSession.Corrected`, else None (a void states the minutes
and service date it takes off the record, not an interval). `actor` and `source` are lifted out
of `data`. Sealed numbers (ledger/sealing.py) are opened with `keys`, the stored keys, and
read as "[erased]" once withdrawn or replaced. The feed adds `state` (the stored bytes, base64)
so an auditor can recompute the audit leaf: sealed numbers are safe to show to anyone in it,
but bytes holding a phone or id number in plain text (stored before sealing) are shown only to
callers allowed to see them unmasked.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ledger.privacy import masked_event_data
from ledger.sealing import holds_plain_number, opened
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


def entry(event: FeedEvent, unmasked: bool, keys: Mapping[str, bytes]) -> dict[str, Any]:
    """An event as the volunteer history shows it."""
    data = opened(event.data, keys)  # a copy: the lifted fields leave it, not event.data
    for lifted in _LIFTED:
        data.pop(lifted, None)
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


def feed_entry(event: FeedEvent, unmasked: bool, keys: Mapping[str, bytes]) -> dict[str, Any]:
    """An event as the event feed shows it: the history's fields and what the leaf is made of."""
    shown = entry(event, unmasked, keys)
    safe = unmasked or not holds_plain_number(event.data)
    return {
        **shown,
        "version": event.version,
        "topic": event.topic,
        "state": base64.b64encode(event.state).decode("ascii") if safe else None,
    }
