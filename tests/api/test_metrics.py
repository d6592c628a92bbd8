"""/metrics: one set of figures for the whole server, whichever worker a scrape reaches."""

from __future__ import annotations

from pathlib import Path

from api.serving import forget_dead_workers


def test_a_worker_that_is_gone_takes_its_live_gauges_and_leaves_its_counts(
        tmp_path: Path) -> None:
    for name in ("gauge_livemax_11.db", "gauge_livemostrecent_11.db", "counter_11.db",
                 "histogram_11.db", "gauge_livemax_12.db", "counter_12.db"):
        (tmp_path / name).write_bytes(b"")
    assert forget_dead_workers(str(tmp_path), {12, None}) == [11]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_11.db", "counter_12.db", "gauge_livemax_12.db", "histogram_11.db"]
