"""The read models over the `ledger` fixture's store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import Ledger
from projections import ReadModels


@pytest.fixture
def models(ledger: Ledger) -> Iterator[ReadModels]:
    """Read models over the test ledger; call `catch_up()` before reading."""
    read_models = ReadModels(ledger)
    yield read_models
    read_models.close()
