"""The volunteer and activity most ledger tests start from."""

from __future__ import annotations

import pytest

from ledger import Ledger
from tests.factories import make_activity, make_volunteer


@pytest.fixture
def volunteer(ledger: Ledger) -> str:
    """A volunteer registered on 2017-01-01 in a town of their own."""
    return make_volunteer(ledger)


@pytest.fixture
def activity(ledger: Ledger) -> str:
    """An activity on Lei Feng Day 2017, 08:00–18:00 district time."""
    return make_activity(ledger)
