"""`python -m bench`: every figure beside its baseline, same run, same store; JSON and Markdown."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.isolate import floor, isolated
from bench.report import comparisons, markdown
from bench.stores import postgres_answers, scratch

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = {"sqlite": [100_000, 1_000_000], "postgres": [100_000]}
# The size issue 4 names for the HTTP figures: 100,000 volunteers and 1,000,000 sessions.
HTTP_FULL_SIZE = 2_250_000
FULL_SIZES = {"sqlite": [100_000, 1_000_000, 2_250_000],
              "postgres": [100_000, 1_000_000, 2_250_000, 10_000_000]}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _head(url: str) -> int:
    from ledger import Ledger, Settings

    ledger = Ledger(Settings(database_url=url))
    try:
        return ledger.head()
    finally:
        ledger.close()


def _commit() -> str | None:
    """The checked-out commit the figures were measured on (with `+` if files were changed)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=HERE, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty.strip() else "")


STEPS = ("populate", "raw_import", "rebuild_read_models", "rebuild_all_views", "raw_scan",
         "reads", "proofs", "raw_hash", "http")


def _step(run: dict[str, Any], name: str, needs: str | None, step: Callable[..., dict[str, Any]],
          **kwargs: Any) -> None:
    """Run one step in its own process and keep its result, or why it did not run or failed."""
    if name not in run["steps"]:
        run[name] = {"not_run": "not asked for (--steps)"}
    elif needs is not None and not _available(needs):
        run[name] = {"not_run": f"{needs} does not exist"}
    else:
        try:
            run[name] = isolated(step, **kwargs)
        except (RuntimeError, TimeoutError) as error:  # keep the other figures of the run
            run[name] = {"error": str(error)[-2000:]}
    shown = {k: v for k, v in run[name].items() if not isinstance(v, dict | list)}
    print(f"  {name}: {shown}", flush=True)


def bench_one(kind: str, events: int, seed: int, http: bool, base: Path,
              steps: frozenset[str] = frozenset(STEPS),
              existing: str | None = None) -> dict[str, Any]:
    """Every step for one store and size, in scratch stores dropped afterwards; or, with
    `existing`, against a store filled before (its views are rebuilt; it is kept)."""
    from bench.proofs import proofs, raw_hash
    from bench.reads import reads
    from bench.rebuilds import raw_scan, rebuild
    from bench.writes import populate, raw_import

    run: dict[str, Any] = {"store": kind, "target_events": events,
                           "steps": sorted({"populate", *steps})}
    print(f"{kind}, about {events:,} events", flush=True)
    with (nullcontext(existing) if existing else scratch(kind, base, "ledger")) as url, \
            scratch(kind, base, "plain") as plain_url, \
            scratch(kind, base, "plainours") as ours_url:
        if existing:  # `events` is then the store's head (main)
            run["populate"] = {"not_run": "an existing store (--existing)", "events": events}
        else:
            _step(run, "populate", None, populate, url=url, events=events, seed=seed)
        if "error" in run["populate"]:
            return run
        _step(run, "raw_import", None, raw_import, ledger_url=url, baseline_url=plain_url,
              ours_url=ours_url)
        _step(run, "rebuild_read_models", "projections.models", rebuild, url=url,
              all_views=False)
        _step(run, "rebuild_all_views", "projections.audit", rebuild, url=url, all_views=True)
        _step(run, "raw_scan", None, raw_scan, url=url)
        _step(run, "reads", "projections.models", reads, url=url)
        _step(run, "proofs", "projections.audit", proofs, url=url)
        _step(run, "raw_hash", None, raw_hash, url=url)
        if http:
            from bench.http import http as http_step

            _step(run, "http", "api.app", http_step, url=url)
        else:
            run["http"] = {"not_run": "HTTP runs at one size per store (see --http-events)"}
    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, run the benchmarks, write the JSON results and the Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--full", action="store_true", help="full sizes (10M events on PG)")
    parser.add_argument("--events", help="comma-separated sizes in events (overrides presets)")
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP load test")
    parser.add_argument("--http-events", type=int,
                        help="the size at which the HTTP load test runs (default: the smallest "
                        f"size of each store; with --full, {HTTP_FULL_SIZE:,}: 100,000 "
                        "volunteers and 1,000,000 sessions)")
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--markdown", type=Path, default=HERE.parent / "docs" / "BENCHMARKS.md")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--steps", help="comma-separated steps to run (populate always runs), "
                        f"of: {', '.join(STEPS)}; e.g. populate,http for the HTTP figures alone")
    parser.add_argument("--existing", help="the URL of a store filled before (e.g. by "
                        "`vledger demo`): run the steps on it instead of populating a scratch "
                        "store; its views are rebuilt, the store is kept (one store, one size)")
    parser.add_argument("--append", action="store_true",
                        help="add this run's sizes to the runs already in --results (a long "
                        "growth point measured apart; each run keeps its own baselines)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS",
                        help="measure nothing: add the runs of these results files (written "
                        "apart with --results, e.g. an hour-long 10M point) to --results as "
                        "appended runs, and write the Markdown again")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.results, args.merge, args.markdown)
    steps = frozenset(args.steps.split(",") if args.steps else STEPS)
    if steps - set(STEPS):
        parser.error(f"unknown steps: {', '.join(sorted(steps - set(STEPS)))}")
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if args.existing:
        kinds = ["postgres" if args.existing.startswith("postgres") else "sqlite"]
        if args.events:
            parser.error("--existing measures the store at its own size; leave out --events")
        args.events = str(_head(args.existing))
    if "postgres" in kinds and not postgres_answers():
        parser.error("PostgreSQL does not answer (set VLEDGER_BENCH_POSTGRES_URL)")
    presets = FULL_SIZES if args.full else DEFAULT_SIZES
    started = datetime.now(UTC).isoformat(timespec="seconds")
    commit = _commit()
    appending = args.append and args.results.exists()
    if appending:  # the earlier run stays the page's heading
        results = _measured(args.results)
    else:
        results = {
            "started_at": started, "commit": commit,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "options": {"store": args.store, "full": args.full, "seed": args.seed},
            "rss_floor_mb": isolated(floor)["peak_rss_mb"], "runs": [],
        }
    began = time.perf_counter()
    for kind in kinds:
        sizes = ([int(s) for s in args.events.split(",")] if args.events else presets[kind])
        http_at = args.http_events or (HTTP_FULL_SIZE if args.full else min(sizes))
        for events in sizes:
            run = bench_one(kind, events, args.seed, http=events == http_at and not args.no_http,
                            base=args.tmp, steps=steps, existing=args.existing)
            settings = {k: v for k, v in os.environ.items()  # what the steps' Settings read
                        if k.startswith("VLEDGER_") and "TOKEN" not in k}
            results["runs"].append({"started_at": started, "commit": commit,
                                    "appended": appending, "settings": settings, **run})
            results["appended_s" if appending else "total_s"] = round(
                time.perf_counter() - began, 1)
            results["comparisons"] = comparisons(results["runs"])
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown(results))
    print(f"done in {round(time.perf_counter() - began, 1)} s: {args.results}, {args.markdown}")
    return results


def _measured(path: Path) -> dict[str, Any]:
    """A results file, each run naming when and at which commit it was measured (runs
    written before they did so took both from the file's heading)."""
    results: dict[str, Any] = json.loads(path.read_text())
    for run in results["runs"]:
        run.setdefault("started_at", results["started_at"])
        run.setdefault("commit", results.get("commit"))
    return results


def merge(into: Path, others: Sequence[Path], page: Path) -> dict[str, Any]:
    """Add other results files' runs to `into` (each keeps its commit, time and baselines)."""
    results = _measured(into)
    for other in others:
        results["runs"].extend({**run, "appended": True} for run in _measured(other)["runs"])
    results["comparisons"] = comparisons(results["runs"])
    into.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    page.write_text(markdown(results))
    print(f"merged {len(others)} file(s) into {into}, {page}")
    return results


if __name__ == "__main__":
    main()
