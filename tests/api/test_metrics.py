"""/metrics: one set of figures for the whole server, whichever worker a scrape reaches; the
events the server stored; how long each view's oldest unread event has waited."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.serving import forget_dead_workers, metrics_directory
from ledger import Settings
from tests.api.conftest import ADMIN_TOKEN, District, bearer

VLEDGER = str(Path(sys.executable).parent / "vledger")
ROOT = Path(__file__).resolve().parents[2]
HEALTHZ = ("vledger_http_requests_total", (("method", "GET"), ("route", "/healthz"),
                                           ("status", "200")))


def figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_view(found: dict[tuple[str, tuple[tuple[str, str], ...]], float],
            name: str) -> dict[str, float]:
    return {dict(labels)["view"]: value for (n, labels), value in found.items() if n == name}


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return figures(response.text)


# -- in one process ---------------------------------------------------------------------------

def test_events_appended_counts_every_event_stored_and_nothing_else(district: District) -> None:
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    appended = ("vledger_events_appended_total", ())
    # A fresh store: every event in it (the catalogue, the district) was stored by this app.
    assert scrape(district.client)[appended] == ledger.head() > 0
    before = ledger.head()
    hours = [(f"2017-03-05T{h:02}:00:00+08:00", f"2017-03-05T{h + 1:02}:00:00+08:00")
             for h in (9, 11, 13)]
    batch = district.post("/v1/service-sessions/batch", {"records": [
        {"volunteer_id": district.volunteer, "activity_id": district.activity,
         "started_at": start, "ended_at": end, "source_record_id": f"m-{n}"}
        for n, (start, end) in enumerate(hours)]})
    assert batch.status_code == 200 and batch.json()["accepted"] == 3, batch.text
    stored = ledger.head() - before
    assert stored >= 3  # one answered position, several events
    assert scrape(district.client)[appended] == ledger.head()
    # What stores nothing counts nothing: a registration sent again, a repeated session.
    body = {"name": "列中社区", "kind": "community", "parent_id": district.unit_a}
    keyed = {**bearer(ADMIN_TOKEN), "Idempotency-Key": "metrics-1"}
    assert district.client.post("/v1/units", json=body, headers=keyed).status_code == 201
    assert district.client.post("/v1/units", json=body, headers=keyed).status_code == 200
    assert district.session(*hours[0], "m-0").status_code == 200
    assert scrape(district.client)[appended] == ledger.head()


def test_view_lag_seconds_is_the_age_of_the_oldest_event_a_view_has_not_read(
        settings: Settings) -> None:
    # Views kept by another process (none runs here): they stay where they are.
    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN,
                                             "inline_projections": False})
    with TestClient(create_app(configured)) as client:
        models = client.app.state.services.models  # type: ignore[attr-defined]
        written = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                              headers=bearer(ADMIN_TOKEN))
        assert written.status_code == 201, written.text
        time.sleep(1.1)
        earlier = client.get("/readyz").json()["lag_seconds"]
        found = scrape(client)
        later = client.get("/readyz").json()["lag_seconds"]
        waited = by_view(found, "vledger_view_lag_seconds")
        lag = by_view(found, "vledger_view_lag_events")
        position = by_view(found, "vledger_view_position")
        head = written.json()["position"]
        assert found[("vledger_events_head", ())] == head
        assert {"hours", "credits"} <= set(waited) and set(waited) == set(lag) == set(position)
        for view in waited:
            assert lag[view] == head - position[view] > 0
            # readyz answers the oldest wait of all, rounded to the millisecond
            assert 1.1 <= earlier - 0.001 <= waited[view] <= later + 0.001 < 60
        models.catch_up()
        found = scrape(client)
        assert set(by_view(found, "vledger_view_lag_seconds").values()) == {0.0}
        assert set(by_view(found, "vledger_view_lag_events").values()) == {0.0}
        assert set(by_view(found, "vledger_view_position").values()) == {head}


def test_a_worker_that_is_gone_takes_its_live_gauges_and_leaves_its_counts(
        tmp_path: Path) -> None:
    for name in ("gauge_livemax_11.db", "gauge_livemostrecent_11.db", "counter_11.db",
                 "histogram_11.db", "gauge_livemax_12.db", "counter_12.db"):
        (tmp_path / name).write_bytes(b"")
    assert forget_dead_workers(str(tmp_path), {12, None}) == [11]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_11.db", "counter_12.db", "gauge_livemax_12.db", "histogram_11.db"]


def test_a_server_that_died_without_cleaning_up_leaves_its_directory_to_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILLed server cannot remove its metrics directory; the next server to start
    does, since the pid in its name no longer runs. A running server's stays."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"vledger-metrics-{gone.stdout.strip()}-abc"
    alive = tmp_path / f"vledger-metrics-{os.getppid()}-def"
    other = tmp_path / "vledger-metrics-notapid"
    for directory in (dead, alive, other):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    with metrics_directory() as mine:
        assert Path(mine).parent == tmp_path
        assert Path(mine).name.startswith(f"vledger-metrics-{os.getpid()}-")
        assert not dead.exists() and alive.exists() and other.exists()
    assert not Path(mine).exists()


# -- a real server of two workers ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own: the kernel hashes each to one worker."""
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10, **kwargs)


def _per_worker(directory: Path) -> dict[int, dict[str, float]]:
    """Requests each worker counted by route, read from its own file."""
    counts: dict[int, dict[str, float]] = {}
    for file in directory.glob("counter_*.db"):
        routes = counts.setdefault(int(file.stem.split("_")[1]), {})
        for metric in MultiProcessCollector.merge([str(file)]):
            for s in metric.samples:
                if s.name == "vledger_http_requests_total":
                    routes[s.labels["route"]] = routes.get(s.labels["route"], 0) + s.value
    return counts


def _wait(until: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = until()
        except (httpx.TransportError, OSError, ValueError):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


@pytest.fixture
def two_workers(database_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`vledger serve --workers 2`; its port and the directory its private metrics
    directory is made in (its TMPDIR)."""
    port = _free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url, "VLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
           "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(
               [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([VLEDGER, "serve", "--port", str(port), "--workers", "2",
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                              stderr=log)
    try:
        yield port, tmp
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not list(tmp.glob("vledger-metrics-*"))  # the directory goes with the server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_every_scrape_of_two_workers_answers_the_whole_server_s_figures(
        two_workers: tuple[int, Path]) -> None:
    """Requests spread over both workers (each connection is hashed to one); every scrape,
    whichever worker answers it, says the same totals, also after a worker is replaced."""
    port, tmp = two_workers
    directory = _wait(lambda: next(tmp.glob("vledger-metrics-*"), None), "a metrics directory")

    def both_answered(route: str) -> bool:
        return sum(1 for c in _per_worker(directory).values() if c.get(route)) == 2

    _wait(lambda: _get(port, "/v1/programs").status_code == 200 and both_answered(
        "/v1/programs"), "both workers answering")
    head = figures(_get(port, "/metrics").text)[("vledger_events_head", ())]
    written = httpx.post(f"http://127.0.0.1:{port}/v1/units", timeout=10,
                         json={"name": "街道", "kind": "subdistrict"},
                         headers=bearer(ADMIN_TOKEN))
    assert written.status_code == 201, written.text
    position = written.json()["position"]
    n = 40
    for _ in range(n):
        assert _get(port, "/healthz").status_code == 200
    assert both_answered("/healthz")  # so each worker alone would have answered less than n
    scrapes = [figures(_get(port, "/metrics").text) for _ in range(24)]
    assert both_answered("/metrics")
    for found in scrapes:
        assert found[HEALTHZ] == n
        assert found[("vledger_http_request_seconds_count", HEALTHZ[1][:2])] == n
        assert found[("vledger_events_appended_total", ())] == position - head >= 1
        assert found[("vledger_events_head", ())] >= position
        waited = by_view(found, "vledger_view_lag_seconds")
        assert {"hours", "credits"} <= set(waited)
        assert all(0 <= w < 60 for w in waited.values())
        lag, at = by_view(found, "vledger_view_lag_events"), by_view(found, "vledger_view_position")
        assert set(lag) == set(at) == set(waited)  # one sample per view, not one per worker

    # A worker that dies is replaced; what it counted still counts, its gauges go with it.
    killed = max(_per_worker(directory))
    os.kill(killed, signal.SIGKILL)
    _wait(lambda: len(_per_worker(directory)) == 3, "a worker in place of the killed one")
    _wait(lambda: not list(directory.glob(f"gauge_*_{killed}.db")), "the dead worker's gauges")
    assert (directory / f"counter_{killed}.db").exists()
    _wait(lambda: _get(port, "/readyz").status_code == 200, "ready again")
    for _ in range(10):
        found = figures(_get(port, "/metrics").text)
        assert found[HEALTHZ] == n
        assert found[("vledger_events_appended_total", ())] == position - head


def test_metrics_still_answer_while_the_store_does_not(district: District,
                                                      monkeypatch: Any) -> None:
    """A monitor wants its figures most when the store is down: the request counts still
    come, and vledger_store_up says the store's own figures are stale."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    up = ("vledger_store_up", ())
    assert scrape(district.client)[up] == 1

    def down() -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(services.models.runner, "status", down)
    response = district.client.get("/metrics")
    assert response.status_code == 200, response.text
    figures = scrape(district.client)
    assert figures[up] == 0
    assert any(name == "vledger_http_requests_total" for name, _ in figures)
    monkeypatch.undo()
    assert scrape(district.client)[up] == 1
