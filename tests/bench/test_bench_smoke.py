"""The benchmark harness runs end to end at a tiny size (the benchmarks never run in tests)."""

from __future__ import annotations

import json
from pathlib import Path

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
