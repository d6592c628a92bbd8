"""SQL that says the same thing on SQLite and PostgreSQL, used by the ledger and the views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson


def one_of(column: str, postgres: bool, mark: str = "?") -> str:
    """A condition that `column` is one of the values given as one parameter (`values_of`):
    an array on PostgreSQL, a JSON array on SQLite, so no statement needs a placeholder per
    value."""
    if postgres:
        return f"{column} = ANY({mark})"
    return f"{column} IN (SELECT value FROM json_each({mark}))"


def values_of(values: Sequence[Any], postgres: bool) -> Any:
    """The one parameter of a `one_of` condition."""
    return list(values) if postgres else orjson.dumps(list(values)).decode()
