"""Figures beside their baselines: the comparison rows, and the Markdown page made of them."""

from __future__ import annotations

from typing import Any

# (figure, unit, our step, our key, baseline step, baseline key, target ratio, higher is better)
PAIRS = (
    ("import sessions: Ledger.record_sessions vs raw app.save(*aggs)", "sessions/s",
     "populate", "sessions_per_s", "raw_import", "sessions_per_s", 0.5),
    ("import sessions: Ledger.record_sessions vs app.save(*aggs) on our recorder (how much "
     "of the gap is the ledger's rules, not the store)", "sessions/s",
     "populate", "sessions_per_s", "raw_import", "our_recorder_sessions_per_s", None),
    ("rebuild read models + history vs select_notifications + JSON decode", "events/s",
     "rebuild_read_models", "events_per_s", "raw_scan", "events_per_s", 0.5),
    ("rebuild all views (+ audit log) vs select_notifications + JSON decode", "events/s",
     "rebuild_all_views", "events_per_s", "raw_scan", "events_per_s", None),
    ("page read as the runner reads (plain rows, not decoded) vs select_notifications + "
     "JSON decode", "events/s", "raw_scan", "rows_per_s", "raw_scan", "events_per_s", None),
    ("volunteer hours: view, computed cold vs GROUP BY (indexed)", "reads/s",
     "reads", "hours_views.per_s", "reads", "hours_plain.per_s", 50.0),
    ("unit rankings: view, computed cold vs GROUP BY", "reads/s",
     "reads", "rankings_views.per_s", "reads", "rankings_plain.per_s", 50.0),
    ("volunteer hours as served (one statement, not remembered) vs GROUP BY", "reads/s",
     "reads", "hours_remembered.per_s", "reads", "hours_plain.per_s", None),
    ("unit rankings as served (remembered per view position) vs GROUP BY", "reads/s",
     "reads", "rankings_remembered.per_s", "reads", "rankings_plain.per_s", None),
    ("inclusion proof vs primary-key read of the event", "per s",
     "proofs", "inclusion_per_s", "proofs", "pk_read_per_s", None),
    ("consistency proof vs primary-key read of an event", "per s",
     "proofs", "consistency_per_s", "proofs", "pk_read_per_s", None),
    ("verify whole log (vledger verify) vs read + SHA-256 every event", "events/s",
     "proofs", "verify_log_events_per_s", "raw_hash", "events_per_s", None),
)


def _get(run: dict[str, Any], step: str, key: str) -> float | None:
    value: Any = run.get(step, {})
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _why(run: dict[str, Any], *steps: str) -> str:
    for step in steps:
        found = run.get(step, {})
        if "not_run" in found:
            return f"not run: {found['not_run']}"
        if "error" in found:
            return "failed: " + str(found["error"]).strip().splitlines()[-1][:120]
    return "not run"


def comparisons(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure and run: ours, the baseline, their ratio, the target, peak memory."""
    rows = []
    for run in runs:
        sessions = run.get("populate", {}).get("sessions")
        events = run.get("populate", {}).get("events", run["target_events"])
        for figure, unit, ours_step, ours_key, base_step, base_key, target in PAIRS:
            if not {ours_step, base_step} <= set(run.get("steps", (ours_step, base_step))):
                continue  # a run of chosen steps (--steps) lists only what it measured
            ours, base = _get(run, ours_step, ours_key), _get(run, base_step, base_key)
            row: dict[str, Any] = {"store": run["store"], "events": events,
                                   "sessions": sessions, "figure": figure, "unit": unit,
                                   "ours": ours, "baseline": base, "target": target}
            if ours is None or base is None or base == 0:
                row["note"] = _why(run, ours_step, base_step)
            else:
                row["ratio"] = round(ours / base, 3)
                row["met"] = None if target is None else row["ratio"] >= target
            row["rss_mb"] = (run.get(ours_step, {}).get("peak_rss_mb"),
                             run.get(base_step, {}).get("peak_rss_mb"))
            rows.append(row)
        for name, found in run.get("http", {}).get("scenarios", {}).items():
            floor = run["http"]["scenarios"].get("healthz (baseline)", {})
            clients = "" if "client" in name else f", {run['http'].get('clients', 50)} clients"
            if "token" in found:
                clients += f", {found['token']} token"
            if found.get("client") == "python":  # runs without wrk (older runs name no client)
                clients += (", measured by a Python client on the same cores, which measures "
                            "itself more than the server: install wrk")
            rows.append({"store": run["store"], "events": events, "sessions": sessions,
                         "figure": f"HTTP {name}{clients} (p50 {found['p50_ms']} ms, p99 "
                                   f"{found['p99_ms']} ms, statuses {found['statuses']})",
                         "unit": "req/s", "ours": found["req_per_s"],
                         "baseline": floor.get("req_per_s"), "target": None,
                         "ratio": round(found["req_per_s"] / floor["req_per_s"], 3)
                         if floor.get("req_per_s") else None,
                         "rss_mb": (run["http"].get("peak_rss_mb"), None)})
        if "not_run" in run.get("http", {}) or "error" in run.get("http", {}):
            rows.append({"store": run["store"], "events": events, "sessions": sessions,
                         "figure": "HTTP under 50 clients", "unit": "req/s", "ours": None,
                         "baseline": None, "target": None, "note": _why(run, "http")})
    return rows


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _apart(results: dict[str, Any]) -> list[str]:
    """A line naming the runs measured at another time (`--append`), if there are any."""
    apart = [f"{run['store']} at {run['target_events']:,} events: {run['started_at']}"
             f" (commit {run.get('commit') or 'unknown'})"
             for run in results["runs"]
             # runs recorded before the flag existed were told apart by their start
             if run.get("appended",
                        run.get("started_at", results["started_at"]) != results["started_at"])]
    if not apart:
        return []
    return ["", "Runs measured at another time and added with `--append` or `--merge` (each "
            "against its own baselines of the same run): " + "; ".join(apart) + "."]


def markdown(results: dict[str, Any]) -> str:
    """The benchmark page: how it was run, then one table row per figure."""
    machine = results["machine"]
    lines = [
        "# Benchmarks", "",
        "Written by `python -m bench` (`make bench`); do not edit by hand. Every figure stands "
        "beside its baseline, measured in the same run, on the same machine and store. "
        "Ratio = ours ÷ baseline, higher is better for every row. Peak RSS is each step's own "
        f"process (a process that does nothing peaks at {results['rss_floor_mb']} MB).", "",
        f"Run {results['started_at']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}; options {results['options']}; {results.get('total_s')} s in all. "
        "The machine's 2 cores are shared with other work, so figures carry noise of ±20 %.",
        *_apart(results),
        "", "| store | events | sessions | figure | ours | baseline | unit | ratio | target "
        "| peak RSS MB (ours / baseline) |",
        "|---|---:|---:|---|---:|---:|---|---:|---|---|",
    ]
    for row in results.get("comparisons", []):
        target = "–" if row["target"] is None else f"≥ {row['target']}×"
        if row.get("met") is not None:
            target += " ✓" if row["met"] else " ✗"
        ratio = row.get("note") or (f"{row['ratio']}×" if row.get("ratio") is not None else "–")
        rss = " / ".join("–" if v is None else str(v) for v in row.get("rss_mb", (None, None)))
        lines.append(f"| {row['store']} | {_num(row['events'])} | {_num(row['sessions'])} | "
                     f"{row['figure']} | {_num(row['ours'])} | {_num(row['baseline'])} | "
                     f"{row['unit']} | {ratio} | {target} | {rss} |")
    lines += ["", "Raw figures, stage timings and answers-match checks: `bench/results.json`.", ""]
    return "\n".join(lines)
