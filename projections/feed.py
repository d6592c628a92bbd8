"""Events as the read side sees them: position, aggregate, type, recorded time and plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from eventsourcing.persistence import Notification

from ledger.loading import state_bytes

# The library's own keys in a stored state: not the event's data (the timestamp is `recorded_at`).
BOOKKEEPING = ("originator_id", "originator_version", "originator_topic")


class FeedEvent:
    """One stored event, shared by every projection; its JSON is decoded when first read.

    Most events concern few views (every session also books the volunteer's calendar), so a
    page is not decoded up front: `data` and `recorded_at` decode the stored state once.
    """

    __slots__ = ("_data", "_recorded_at", "originator_id", "position", "state", "topic", "type",
                 "version")

    def __init__(self, position: int, originator_id: str, version: int, type: str,
                 recorded_at: str | None = None, data: dict[str, Any] | None = None,
                 topic: str = "", state: bytes = b"") -> None:
        self.position = position
        self.originator_id = originator_id
        self.version = version
        self.type = type  # e.g. "ServiceSession.Recorded"
        self.topic = topic
        self.state = state
        self._recorded_at = recorded_at
        self._data = data

    def _decode(self) -> None:
        # orjson parses in C; the parsed dict becomes the data in place (the bookkeeping keys
        # popped, datetimes unwrapped) rather than copied key by key: a quarter of the cost.
        data = orjson.loads(self.state)
        stamp = data.pop("timestamp", "")
        for key in BOOKKEEPING:
            data.pop(key, None)
        for key, value in data.items():
            if type(value) is dict and len(value) == 2 and "_type_" in value:
                data[key] = value["_data_"]  # a datetime: our events nest none deeper
        self._data = data
        self._recorded_at = str(stamp["_data_"] if type(stamp) is dict else stamp)

    @property
    def data(self) -> dict[str, Any]:
        """The event's own fields (datetimes, UUIDs and decimals as text)."""
        if self._data is None:
            self._decode()
        assert self._data is not None
        return self._data

    @property
    def recorded_at(self) -> str:
        """When the event was recorded, ISO 8601 with offset."""
        if self._recorded_at is None:
            self._decode()
        assert self._recorded_at is not None
        return self._recorded_at

    @property
    def aggregate(self) -> str:
        return self.type.split(".", 1)[0]

    def __repr__(self) -> str:
        return f"FeedEvent(position={self.position}, type={self.type!r}, id={self.originator_id!r})"


_TYPES: dict[str, str] = {}  # topic -> type, e.g. "ServiceSession.Recorded"


def _type_of(topic: str) -> str:
    kind = _TYPES.get(topic)
    if kind is None:
        kind = _TYPES.setdefault(topic, topic.rsplit(":", 1)[-1])
    return kind


def _event(position: int, originator_id: str, version: int, topic: str,
           state: Any) -> FeedEvent:
    """A stored event's fields wrapped, its JSON left undecoded."""
    return FeedEvent(position, originator_id, version, _type_of(topic), None, None, topic,
                     state if type(state) is bytes else state_bytes(state))


def decode(notification: Notification) -> FeedEvent:
    """Wrap a stored notification without building domain objects (the fast path)."""
    return _event(notification.id, str(notification.originator_id),
                  notification.originator_version, notification.topic, notification.state)


def decode_page(notifications: Sequence[Notification]) -> list[FeedEvent]:
    """Wrap a page of notifications."""
    return [decode(n) for n in notifications]


def read_events(recorder: Any, start: int, limit: int,
                stop: int | None = None) -> list[FeedEvent]:
    """The stored events from position `start`, at most `limit`, none past `stop`: what
    `select_notifications` answers, read as our recorders' plain rows (`select_rows`,
    ledger/sqliterecorder.py) rather than a `Notification` per event."""
    # Wrapped in one loop, arguments by position (a rebuild wraps every stored event).
    types = _TYPES
    return [FeedEvent(position, originator_id, version, types.get(topic) or _type_of(topic),
                      None, None, topic, state if type(state) is bytes else state_bytes(state))
            for position, originator_id, version, topic, state
            in recorder.select_rows(start, limit, stop)]
