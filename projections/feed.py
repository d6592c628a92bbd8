"""Events as the read side sees them: position, aggregate, type, recorded time and plain data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification

_TRANSCODED = ("_type_", "_data_")


def _plain(d: dict[str, Any]) -> Any:
    # The library wraps datetimes, UUIDs and decimals as {"_type_": …, "_data_": …};
    # the read side keeps their text form (ISO 8601 with offset, hex, decimal string).
    if len(d) == 2 and "_type_" in d and "_data_" in d:
        return d["_data_"]
    return d


_decoder = json.JSONDecoder(object_hook=_plain)

BOOKKEEPING = ("originator_id", "originator_version", "originator_topic", "timestamp")


@dataclass(frozen=True)
class FeedEvent:
    """One stored event, decoded once for every projection."""

    position: int
    originator_id: str
    version: int
    type: str  # e.g. "ServiceSession.Recorded"
    recorded_at: str  # ISO 8601 with offset
    data: dict[str, Any]
    topic: str
    state: bytes

    @property
    def aggregate(self) -> str:
        return self.type.split(".", 1)[0]


def decode(notification: Notification) -> FeedEvent:
    """Decode a stored notification without building domain objects (the fast path)."""
    state = notification.state
    raw = _decoder.decode(state.decode("utf8") if isinstance(state, bytes | bytearray) else state)
    topic = notification.topic
    data = {k: v for k, v in raw.items() if k not in BOOKKEEPING}
    return FeedEvent(
        position=notification.id,
        originator_id=str(notification.originator_id),
        version=notification.originator_version,
        type=topic.rsplit(":", 1)[-1],
        recorded_at=str(raw.get("timestamp", "")),
        data=data,
        topic=topic,
        state=bytes(state),
    )


def decode_page(notifications: Sequence[Notification]) -> list[FeedEvent]:
    return [decode(n) for n in notifications]
