"""Schemathesis fuzzes every operation of /openapi.json: no 5xx, responses match the schema."""

from __future__ import annotations

import random
from typing import Any

import psycopg_pool.base
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from api.app import create_app
from ledger import Settings
from tests.api.conftest import ADMIN_TOKEN

EXAMPLES_PER_OPERATION = 12
# Acceptance of "valid" data cannot hold for a ledger: schema-valid ids still name nothing.
# A 503 with Retry-After is the contract's answer when the views cannot reach min_position.
EXCLUDED = [positive_data_acceptance, negative_data_rejection, not_a_server_error]


def _no_server_error(response: Any) -> None:
    if response.status_code == 503 and response.headers.get("retry-after"):  # lists of values
        return
    assert response.status_code < 500, (response.status_code, response.text)


def test_no_operation_answers_5xx_or_off_schema(settings: Settings,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # psycopg_pool draws from the global `random` (jitter on each new connection's lifetime)
    # in its background threads, and the PostgreSQL read pool fills in the background after
    # start: hypothesis took a draw that landed meanwhile for a strategy using `random`, and
    # failed the run as flaky. The pool draws from a generator of its own here.
    monkeypatch.setattr(psycopg_pool.base, "random", random.Random().random)
    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN,
                                             "read_wait_seconds": 0.1})
    app = create_app(configured)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 30
        for operation in operations:
            _fuzz(operation)


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, excluded_checks=EXCLUDED)
        _no_server_error(response)

    check()
