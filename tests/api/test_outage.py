"""A PostgreSQL outage, through a proxy (tests/proxy.py): prompt 503s, never a hang, recovery.

A real server (uvicorn in a thread) on a store reached through the proxy; the bounds are
generous upper bounds (where requests used to take 10 s, or hang for ever), not timings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg.transaction import BaseTransaction

from api.app import create_app
from ledger import Settings
from tests.api.conftest import ADMIN_TOKEN, T0, T1, bearer
from tests.proxy import StoreProxy, store_proxy

pytestmark = pytest.mark.stores("postgres")

DOWN_BOUND = 4.0  # a 503 while the store refuses connections (it was about 10 s)
FROZEN_BOUND = 8.0  # a 503 while the store answers nothing (it was never)
RECOVERY_BOUND = 20.0  # from the store's return to a write stored again
CLIENT_TIMEOUT = 30.0  # what the test waits at most for any answer (a hang fails the test)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` served by uvicorn in a thread; its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="outage-server")
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Outage:
    """A served API whose store can be taken down, frozen and brought back (`proxy`)."""

    proxy: StoreProxy
    app: FastAPI
    http: httpx.Client
    unit: str
    volunteer: str
    activity: str

    def timed(self, method: str, path: str, body: Any = None,
              token: str | None = ADMIN_TOKEN) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = self.http.request(method, path, json=body, headers=bearer(token))
        return response, time.monotonic() - started

    def session(self, source: str, day: int = 5) -> tuple[httpx.Response, float]:
        return self.timed("POST", "/v1/service-sessions", {
            "volunteer_id": self.volunteer, "activity_id": self.activity,
            "started_at": T0.replace("05T08", f"{day:02d}T08"),
            "ended_at": T0.replace("05T08", f"{day:02d}T09"), "source_record_id": source})


@pytest.fixture
def outage(database_url: str) -> Iterator[Outage]:
    with store_proxy() as proxy:
        app = create_app(Settings(database_url=proxy.url(database_url),
                                  admin_token=ADMIN_TOKEN))
        with serving(app) as base, httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as http:
            def post(path: str, body: Any) -> str:
                response = http.post(path, json=body, headers=bearer(ADMIN_TOKEN))
                assert response.status_code == 201, response.text
                made: str = response.json()["id"]
                return made

            unit = post("/v1/units", {"name": "列东街道", "kind": "subdistrict"})
            volunteer = post("/v1/volunteers", {"name": "林小梅", "home_unit_id": unit,
                                                "registered_on": "2017-01-10"})
            activity = post("/v1/activities", {
                "program_code": "B5", "organiser_unit_id": unit, "title": "学雷锋纪念日",
                "starts_at": "2017-03-01T08:00:00+08:00", "ends_at": T1.replace("05", "20")})
            yield Outage(proxy, app, http, unit, volunteer, activity)
            proxy.up()  # so the server stops on a store that answers


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1


def test_a_write_while_the_store_is_down_is_a_prompt_503(outage: Outage) -> None:
    outage.proxy.down()
    for attempt in range(3):  # the first finds a dropped connection, the next ones none
        response, took = outage.session(f"down-{attempt}")
        print(f"write while down: {response.status_code} in {took:.2f} s")
        _unavailable(response)
        # Its dead connections were dropped before use: nothing was sent, nothing is unknown.
        assert response.json()["type"].endswith("/store-unavailable")
        assert took < DOWN_BOUND


def test_reads_while_the_store_is_down_are_a_prompt_503(outage: Outage) -> None:
    outage.proxy.down()
    for path in (f"/v1/volunteers/{outage.volunteer}/hours",
                 "/v1/rankings/units?kind=subdistrict",
                 f"/v1/volunteers/{outage.volunteer}/history",
                 f"/v1/volunteers/{outage.volunteer}"):
        response, took = outage.timed("GET", path)
        print(f"read {path} while down: {response.status_code} in {took:.2f} s")
        _unavailable(response)
        assert took < DOWN_BOUND


def test_probes_while_the_store_is_down_are_a_prompt_503(outage: Outage) -> None:
    outage.proxy.down()
    for path in ("/healthz", "/readyz"):
        response, took = outage.timed("GET", path, token=None)
        print(f"{path} while down: {response.status_code} in {took:.2f} s")
        _unavailable(response)
        assert took < DOWN_BOUND


def _recovered(outage: Outage, source: str) -> float:
    """Send the same session until it is stored (the store is back); how long that took."""
    started = time.monotonic()
    while True:
        response, _ = outage.session(source, day=6)
        if response.status_code in (200, 201):
            print(f"sent again: {response.status_code}")
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < RECOVERY_BOUND, "the server did not recover"
        time.sleep(0.2)


def _counted_once(outage: Outage) -> None:
    """The sessions 'before' (day 5) and the one sent until stored (day 6): an hour each."""
    head = outage.timed("GET", "/healthz", token=None)[0].json()["head"]
    hours, _ = outage.timed("GET", f"/v1/volunteers/{outage.volunteer}/hours"
                                   f"?min_position={head}")
    assert hours.status_code == 200, hours.text
    assert hours.json()["total_minutes"] == 120


def test_the_same_server_answers_again_once_the_store_is_back(outage: Outage) -> None:
    stored, _ = outage.session("before")
    assert stored.status_code == 201, stored.text
    outage.proxy.down()
    refused, _ = outage.session("after")
    assert refused.status_code == 503
    outage.proxy.up()
    took = _recovered(outage, "after")
    print(f"a write stored again {took:.2f} s after the store came back")
    assert outage.timed("GET", "/healthz", token=None)[0].status_code == 200
    _counted_once(outage)


def test_a_write_while_the_store_is_frozen_is_a_503_within_a_bound(outage: Outage) -> None:
    outage.proxy.freeze()
    response, took = outage.session("frozen-1")
    print(f"write while frozen: {response.status_code} in {took:.2f} s")
    _unavailable(response)
    assert took < FROZEN_BOUND


def test_reads_while_the_store_is_frozen_are_a_503_within_a_bound(outage: Outage) -> None:
    outage.proxy.freeze()
    for path in (f"/v1/volunteers/{outage.volunteer}/hours",
                 "/v1/rankings/units?kind=subdistrict",
                 f"/v1/volunteers/{outage.volunteer}/history"):
        response, took = outage.timed("GET", path)
        print(f"read {path} while frozen: {response.status_code} in {took:.2f} s")
        _unavailable(response)
        assert took < FROZEN_BOUND


def test_probes_keep_answering_while_writes_wait_on_a_frozen_store(outage: Outage) -> None:
    outage.proxy.freeze()
    with ThreadPoolExecutor(max_workers=50) as pool:
        writes = [pool.submit(outage.session, f"frozen-{i}") for i in range(50)]
        time.sleep(1)  # the writes are in, holding whatever they hold
        for path in ("/healthz", "/readyz"):
            response, took = outage.timed("GET", path, token=None)
            print(f"{path} while frozen: {response.status_code} in {took:.2f} s")
            assert response.status_code == 503 and took < FROZEN_BOUND
        answers = [w.result() for w in writes]
    slowest = max(took for _, took in answers)
    print(f"50 writes while frozen: {sorted({r.status_code for r, _ in answers})}, "
          f"slowest {slowest:.2f} s")
    assert {r.status_code for r, _ in answers} == {503}
    assert slowest < 2 * FROZEN_BOUND


def test_the_same_server_answers_again_once_the_store_thaws(outage: Outage) -> None:
    stored, _ = outage.session("before")
    assert stored.status_code == 201, stored.text
    outage.proxy.freeze()
    frozen, _ = outage.session("after", day=6)
    assert frozen.status_code == 503
    outage.proxy.up()
    took = _recovered(outage, "after")
    print(f"a write stored again {took:.2f} s after the store thawed")
    assert outage.timed("GET", "/healthz", token=None)[0].status_code == 200
    # The frozen write's statements reach the server once it thaws, the connection's end
    # after them: whether it committed or not, sent again it counts once.
    _counted_once(outage)


def test_a_write_whose_answer_is_lost_is_a_503_and_sent_again_counts_once(
        outage: Outage, monkeypatch: pytest.MonkeyPatch) -> None:
    stored, _ = outage.session("before")
    assert stored.status_code == 201, stored.text
    # The connection dies just after the write's COMMIT went out: the COMMIT reaches the
    # server, its answer never comes back.
    recorder = outage.app.state.services.ledger.recorder
    insert, commit = recorder._insert_once, BaseTransaction._commit_gen
    inserting = threading.local()

    def insert_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        inserting.now = True
        try:
            return insert(*args, **kwargs)
        finally:
            inserting.now = False

    def commit_unanswered(self: Any) -> Any:
        if getattr(inserting, "now", False):
            outage.proxy.lose_answers()
        return commit(self)

    monkeypatch.setattr(recorder, "_insert_once", insert_then_lose_the_answer)
    monkeypatch.setattr(BaseTransaction, "_commit_gen", commit_unanswered)
    lost, took = outage.session("after", day=6)
    print(f"a write whose answer was lost: {lost.status_code} in {took:.2f} s")
    _unavailable(lost)
    assert lost.json()["type"].endswith("/write-outcome-unknown")
    assert "may or may not have been stored" in lost.json()["detail"]
    assert took < FROZEN_BOUND
    monkeypatch.undo()
    outage.proxy.up()
    _recovered(outage, "after")
    again, _ = outage.session("after", day=6)
    assert again.status_code == 200, again.text  # it was stored: recognised, the same id
    _counted_once(outage)
