"""The benchmark harness runs end to end at a tiny size (the benchmarks never run in tests)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main


def test_the_harness_writes_every_figure_beside_its_baseline(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    page = tmp_path / "BENCHMARKS.md"
    main(["--store", "sqlite", "--events", "450", "--no-http", "--results", str(results),
          "--markdown", str(page), "--tmp", str(tmp_path)])
    found = json.loads(results.read_text())
    rows = found["comparisons"]
    assert found["runs"][0]["populate"]["sessions"] > 100
    measured = [r for r in rows if r.get("ratio") is not None]
    assert {r["figure"].split(":")[0] for r in measured} >= {"import sessions", "volunteer hours"}
    assert all(r["ours"] > 0 and r["baseline"] > 0 for r in measured)
    assert all("failed" not in r.get("note", "") for r in rows)
    assert "| sqlite |" in page.read_text()
    assert all(r["reads"]["hours_match"] and r["reads"]["rankings_match"] for r in found["runs"])


def test_a_growth_point_measured_apart_is_appended_under_the_earlier_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both runs start in the same second, as two tiny runs on a fast machine do: the page
    # must still tell the appended one apart.
    class SameSecond(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> SameSecond:
            return cls(2026, 11, 29, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr("bench.__main__.datetime", SameSecond)
    results = tmp_path / "results.json"
    page = tmp_path / "BENCHMARKS.md"
    common = ["--store", "sqlite", "--no-http", "--results", str(results), "--markdown",
              str(page), "--tmp", str(tmp_path)]
    main([*common, "--events", "450"])
    first = json.loads(results.read_text())
    main([*common, "--events", "900", "--append"])
    found = json.loads(results.read_text())
    assert found["started_at"] == first["started_at"]
    assert [r["target_events"] for r in found["runs"]] == [450, 900]
    assert found["runs"][0] == first["runs"][0]
    assert {r["events"] for r in found["comparisons"]} == {
        r["populate"]["events"] for r in found["runs"]}
    text = page.read_text()
    assert "added with `--append`" in text and "sqlite at 900 events" in text


def test_chosen_steps_run_alone_and_list_only_what_they_measured(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    main(["--store", "sqlite", "--events", "450", "--no-http", "--steps", "raw_scan",
          "--results", str(results), "--markdown", str(tmp_path / "B.md"),
          "--tmp", str(tmp_path)])
    found = json.loads(results.read_text())
    run = found["runs"][0]
    assert run["populate"]["sessions"] > 100 and run["raw_scan"]["events_per_s"] > 0
    assert run["reads"] == {"not_run": "not asked for (--steps)"}
    # Only the figure raw_scan measures on its own had its steps run (the HTTP row says why
    # HTTP did not run).
    assert [r["figure"].split(" (")[0] for r in found["comparisons"]
            if not r["figure"].startswith("HTTP")] == ["page read as the runner reads"]


def test_an_existing_store_is_measured_and_kept(tmp_path: Path) -> None:
    from ledger import Ledger, Settings
    from ledger.demo import generate_district

    url = f"sqlite:///{tmp_path / 'filled.db'}"
    ledger = Ledger(Settings(database_url=url))
    try:
        head = generate_district(ledger, 20, 150, 7).position
    finally:
        ledger.close()
    results = tmp_path / "results.json"
    for _ in range(2):  # measured twice: the second run finds nothing of the first's in it
        main(["--existing", url, "--no-http", "--append", "--steps",
              "rebuild_read_models,raw_scan,reads",
              "--results", str(results), "--markdown", str(tmp_path / "B.md"),
              "--tmp", str(tmp_path)])
    first, second = json.loads(results.read_text())["runs"]
    assert all(r["reads"].get("hours_match") and r["reads"].get("rankings_match")
               for r in (first, second)), second["reads"]
    run = first
    assert run["store"] == "sqlite" and run["target_events"] == head
    assert run["populate"]["not_run"].startswith("an existing store")
    assert run["rebuild_read_models"]["events"] == head
    assert (tmp_path / "filled.db").exists()


def test_a_run_written_to_its_own_file_is_merged_under_the_earlier_run(tmp_path: Path) -> None:
    common = ["--store", "sqlite", "--no-http", "--tmp", str(tmp_path)]
    first, apart = tmp_path / "results.json", tmp_path / "apart.json"
    page = tmp_path / "BENCHMARKS.md"
    main([*common, "--events", "450", "--results", str(first), "--markdown", str(page)])
    main([*common, "--events", "900", "--results", str(apart),
          "--markdown", str(tmp_path / "apart.md")])
    measured_apart = json.loads(apart.read_text())
    main(["--results", str(first), "--markdown", str(page), "--merge", str(apart)])
    found = json.loads(first.read_text())
    assert [r["target_events"] for r in found["runs"]] == [450, 900]
    merged = found["runs"][1]
    assert merged["appended"] and not found["runs"][0].get("appended")
    assert merged["started_at"] == measured_apart["started_at"]
    assert merged["populate"] == measured_apart["runs"][0]["populate"]  # its own figures
    assert {r["events"] for r in found["comparisons"]} >= {
        found["runs"][0]["populate"]["events"], merged["populate"]["events"]}
    assert "measured at another time" in page.read_text()
