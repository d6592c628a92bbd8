"""Run each benchmark step in its own forked process, so its peak memory is its own."""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

Step = Callable[..., dict[str, Any]]


def _child(conn: Connection, step: Step, kwargs: dict[str, Any]) -> None:
    try:
        result = step(**kwargs)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def isolated(step: Step, timeout: float = 3600, **kwargs: Any) -> dict[str, Any]:
    """The step's result dict plus `peak_rss_mb` (the child's peak RSS) and `wall_s`."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)
    began = time.perf_counter()
    process = ctx.Process(target=_child, args=(theirs, step, kwargs), daemon=True)
    process.start()
    theirs.close()
    if not ours.poll(timeout):
        process.kill()
        process.join()
        raise TimeoutError(f"{step.__name__} took longer than {timeout:.0f} s")
    status, payload = ours.recv()
    process.join()
    if status != "ok":
        raise RuntimeError(f"{step.__name__} failed in its process:\n{payload}")
    payload["wall_s"] = round(time.perf_counter() - began, 2)
    return dict(payload)


def floor() -> dict[str, Any]:
    """A step that does nothing: the RSS every step starts from."""
    return {}
