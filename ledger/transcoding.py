"""How events are written and read: the library's JSON encoding, decoded with orjson.

Stored events keep eventsourcing's format ({"_type_": …, "_data_": …} for datetimes), so the
library and our read side read them alike; only decoding is faster, which is most of what
loading a volunteer costs.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

from ledger.errors import InvalidField


class LedgerTranscoder(JSONTranscoder):
    """The library's JSON transcoder with orjson doing the parsing.

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
            return super().encode(obj)
        except ValueError as error:  # only NaN and the infinities raise it
            raise InvalidField(f"a number must be finite ({error})", "body") from None

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
