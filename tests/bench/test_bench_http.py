"""The HTTP step at a tiny size: every scenario answers 2xx, by wrk where it is installed and
by the Python client where it is not, and the writes it reports are in the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.http import http
from ledger import Ledger, Settings
from ledger.aggregate import event_topic
from ledger.demo import generate_district
from ledger.sessions import ServiceSession


def _bench_sessions(url: str) -> int:
    ledger = Ledger(Settings(database_url=url))
    try:
        page = ledger.recorder.select_notifications(
            1, 100_000, topics=[event_topic(ServiceSession, "Recorded")])
        return sum(1 for n in page if b"bench-http-" in bytes(n.state))
    finally:
        ledger.close()


@pytest.mark.parametrize("client", ["wrk if installed", "python"])
def test_each_scenario_answers_2xx_and_the_writes_are_stored(
        client: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(Settings(database_url=url))
    try:
        generate_district(ledger, 30, 120, 1)
    finally:
        ledger.close()
    if client == "python":
        monkeypatch.setattr("bench.http.shutil.which", lambda name: None)
    found = http(url, clients=4, total=40, seconds=1)

    scenarios = found["scenarios"]
    assert set(scenarios) == {"record session, 1 client", "healthz (baseline)",
                              "volunteer hours", "unit rankings", "record session"}
    by_wrk = client != "python" and shutil.which("wrk") is not None
    for name, result in scenarios.items():
        assert result["requests"] > 0
        assert result["client"] == ("wrk" if by_wrk else "python")
        ok = "201" if "session" in name else "200"
        assert set(result["statuses"]) == ({"non_2xx"} if by_wrk else {ok})
        assert result["statuses"].get("non_2xx", 0) == 0
    assert found["server_errors"] == {}
    written = sum(scenarios[n]["requests"] for n in scenarios if "session" in n)
    # wrk counts the answers it read before its time was up; one more may have been written.
    assert written <= _bench_sessions(url) <= written + 4 + 1



def test_figures_a_python_client_measured_say_so() -> None:
    from bench.report import comparisons

    def scenario(client: str) -> dict[str, object]:
        return {"requests": 10, "statuses": {"200": 10}, "req_per_s": 100.0, "p50_ms": 1.0,
                "p99_ms": 2.0, "client": client}

    for client, labelled in (("python", True), ("wrk", False)):
        run = {"store": "sqlite", "target_events": 10, "steps": ["populate", "http"],
               "populate": {"events": 10, "sessions": 4},
               "http": {"clients": 50, "scenarios": {"healthz (baseline)": scenario(client)}}}
        (row,) = comparisons([run])
        assert ("Python client" in row["figure"]) == labelled
