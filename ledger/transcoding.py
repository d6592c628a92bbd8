"""How events are written and read: the library's JSON format, written and parsed by orjson.

Stored events keep eventsourcing's format ({"_type_": …, "_data_": …} for datetimes), so the
library and our read side read them alike. orjson writes the same bytes as the library's
encoder (compact separators, UTF-8, keys in order, the library's transcodings called for
datetimes and the like) in a fraction of the time: JSON encoding was a fifth of recording a
session. Where orjson would write something else (a UUID as a plain string, NaN as null) or
cannot write at all (integers beyond 64 bits, keys that are not text), the library's encoder
writes or refuses the value as before.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

from ledger.errors import InvalidField


class _NotPlain(Exception):
    """A value `LedgerTranscoder._plain` leaves to the library's encoder."""


class LedgerTranscoder(JSONTranscoder):
    """The library's JSON transcoder with orjson doing the writing and the parsing.

    It refuses to write what it could not read back: Python's encoder writes NaN and Infinity
    by default, which are not JSON, and a stored event the read side cannot parse would stop
    every view at that position for ever. Such a value fails the write as a bad request.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = json.JSONEncoder(default=self._encode_obj, separators=(",", ":"),
                                        ensure_ascii=False, allow_nan=False)

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(self._plain(obj))
        except (_NotPlain, TypeError):
            pass  # the library's encoder writes it, or refuses it in its own words
        try:
            return super().encode(obj)
        except ValueError as error:  # only NaN and the infinities raise it
            raise InvalidField(f"a number must be finite ({error})", "body") from None

    def _plain(self, value: Any) -> Any:
        """`value` with each datetime replaced by the library's transcoded form of it, ready
        for orjson; raises _NotPlain for anything orjson would write otherwise (a UUID, NaN or
        an infinity, a subclass, any other type) or that needs another transcoding."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is dict:
            # Most values of an event are text or whole numbers: kept without a call each.
            return {k: v if type(v) is str or type(v) is int or v is None else self._plain(v)
                    for k, v in value.items()}
        if kind is datetime:
            transcoding = self.types.get(datetime)
            if transcoding is None:
                raise _NotPlain
            if type(transcoding) is DatetimeAsISO:
                # orjson writes what isoformat() writes, in C, except that it rounds an offset
                # to whole minutes (historical zones have offsets like +08:05:43).
                offset = value.utcoffset()
                if offset is None or not (offset.seconds % 60 or offset.microseconds):
                    return {"_type_": transcoding.name, "_data_": value}
            return {"_type_": transcoding.name, "_data_": transcoding.encode(value)}
        if kind is list or kind is tuple:
            return [self._plain(v) for v in value]
        if kind is float and math.isfinite(value):
            return value
        raise _NotPlain

    def decode(self, data: bytes) -> Any:
        """Parse in C, then revive the transcoded values (datetimes, UUIDs, decimals)."""
        return self._revive(orjson.loads(data))

    def _revive(self, value: Any) -> Any:
        """Revive transcoded values in place, calling itself only for nested dicts and lists
        (a volunteer's snapshot holds a list per session, of plain numbers)."""
        if type(value) is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self.names[value["_type_"]].decode(self._revive(value["_data_"]))
            for k, v in value.items():
                if type(v) is dict or type(v) is list:
                    value[k] = self._revive(v)
        elif type(value) is list:
            for i, v in enumerate(value):
                if type(v) is dict or type(v) is list:
                    value[i] = self._revive(v)
        return value
