"""HTTP under 50 concurrent clients: the API served by uvicorn on 127.0.0.1, bounded load.

Each scenario stops after `total` requests or `seconds`, whichever comes first. The baseline is
`GET /healthz` on the same server: the floor of the framework, the server and the client.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import Ledger, Settings
from ledger.activities import Activity
from ledger.aggregate import event_topic
from ledger.signingkey import key_path
from projections.models import ReadModels, auditor_views

TOKEN = "bench-admin-token-not-secret"
WORKERS = 2  # one per core: a single process spends its time on the GIL, not on requests
Request = tuple[str, str, dict[str, Any] | None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(base: str, make: Callable[[int], Request], clients: int, total: int,
                seconds: float, token: str = TOKEN) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    issued = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=30) as client:
        async def worker() -> None:
            nonlocal issued
            while issued < total and time.perf_counter() < deadline:
                method, path, body = make(issued)
                issued += 1
                began = time.perf_counter()
                try:
                    response = await client.request(method, path, json=body)
                    statuses[str(response.status_code)] += 1
                except httpx.TransportError as error:  # counted: the server dropped us
                    statuses[type(error).__name__] += 1
                latencies.append((time.perf_counter() - began) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"requests": len(ordered), "statuses": dict(statuses), "client": "python",
            "req_per_s": round(len(ordered) / elapsed, 1),
            "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(base: str, script: str, clients: int, seconds: float, folder: str,
         token: str = TOKEN) -> dict[str, Any]:
    """A scenario driven by wrk (C, from Debian's packages; one thread, so one Lua state): the
    client costs little CPU. A Python client of 50 connections took a core of its own and
    measured itself: 216 writes/s with a p99 of a second where wrk saw 877 and 106 ms."""
    path = Path(folder, "scenario.lua")
    path.write_text(script, "utf8")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, int(seconds))}s", "--latency",
         "-H", f"Authorization: Bearer {token}", "-s", str(path), base],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return round(float(value) * _UNITS[unit], 2)

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": done, "statuses": {"non_2xx": int(bad.group(1)) if bad else 0},
            "req_per_s": round(rate, 1), "p50_ms": latency("50%"), "p99_ms": latency("99%"),
            "client": "wrk"}


def _lua_list(items: list[str]) -> str:
    return "{" + ",".join('"' + i.replace('"', "") + '"' for i in items) + "}"


def _cycling_gets(paths: list[str]) -> str:
    """wrk cycles through `paths` (e.g. every volunteer's hours), so the answers the server
    remembers per view position are not one URL asked again and again."""
    return (f"local paths = {_lua_list(paths)}\nlocal i = 0\n"
            "request = function()\n  i = i % #paths + 1\n"
            "  return wrk.format(nil, paths[i])\nend\n")


def _session_posts(volunteers: list[str], activity: str, year: int, month: int,
                   label: str) -> str:
    """The n-th request records a session for volunteer n mod V, at an hour of its own (the
    same as `write` in `http` below): no overlaps, each with its own source record id."""
    return (f"local vols = {_lua_list(volunteers)}\nlocal n = -1\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            "request = function()\n  n = n + 1\n"
            "  local hour = math.floor(n / #vols)\n"
            "  local day, at = 1 + math.floor(hour / 10) % 28, 8 + hour % 10\n"
            f'  local when = string.format("{year}-{month:02d}-%02dT%02d:", day, at)\n'
            "  local body = string.format("
            f"'{{\"volunteer_id\": \"%s\", \"activity_id\": \"{activity}\", "
            f"\"started_at\": \"%s00:00+08:00\", \"ended_at\": \"%s45:00+08:00\", "
            f"\"source_record_id\": \"{label}-%d\"}}', vols[n % #vols + 1], when, when, n)\n"
            '  return wrk.format("POST", "/v1/service-sessions", nil, body)\nend\n')


def _ids(ledger: Ledger, topic: str, limit: int) -> list[str]:
    page = ledger.recorder.select_notifications(1, limit, topics=[topic])
    return [str(n.originator_id) for n in page]


def _earlier_runs(ledger: Ledger) -> int:
    """How many activities earlier HTTP runs planned in this store."""
    count, start = 0, 1
    while True:
        page = ledger.recorder.select_notifications(
            start, 5000, topics=[event_topic(Activity, "Planned")])
        count += sum(1 for n in page if b"benchmark" in bytes(n.state))
        if len(page) < 5000:
            return count
        start = page[-1].id + 1


def http(url: str, clients: int = 50, total: int = 3000, seconds: float = 15) -> dict[str, Any]:
    """Start `uvicorn api.app:app_from_env`, run each scenario, stop the server."""
    import httpx

    ledger = Ledger(Settings(database_url=url))
    try:
        volunteers = _ids(ledger, "ledger.volunteers:Volunteer.Registered", 5000)
        unit = _ids(ledger, "ledger.units:Unit.Registered", 1)[0]
        # Each run writes in a year of its own (2018 on, where the demo has no sessions), so a
        # store measured again (--existing) does not refuse the writes as overlapping.
        year = 2018 + _earlier_runs(ledger) % 8
        # The views a server builds on its first start, built here instead: at 2.2M events
        # that takes longer than the wait for the server below, and it is not what is timed.
        models = ReadModels(ledger, extra=auditor_views())
        try:
            models.catch_up()
        finally:
            models.close()
    finally:
        ledger.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        # The store's own signing key (where the ledger above found it): it seals the events
        # the server writes and checks those stored (ledger/eventseals.py).
        env = {**os.environ, "VLEDGER_DATABASE_URL": url, "VLEDGER_ADMIN_TOKEN": TOKEN,
               "VLEDGER_SIGNING_KEY_FILE": str(key_path(Settings(database_url=url).store()))}
        server_log = open(f"{folder}/server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(  # `vledger serve`, as an operator starts it
            [sys.executable, "-c", "from api.cli import app; app()", "serve", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--workers", str(WORKERS)], env=env,
            stdout=server_log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("the API did not start within 60 s")
            admin = {"Authorization": f"Bearer {TOKEN}"}
            # Clients present tokens issued to them, as real ones do (the bootstrap admin
            # token is compared in memory and would flatter the figures): a committee reads,
            # the organiser unit's recorder writes.
            tokens = {role: httpx.post(f"{base}/v1/tokens", headers=admin, timeout=30, json={
                "role": role, "unit_id": unit if role == "recorder" else None,
                "label": f"bench {role}"}).json()["token"] for role in ("committee", "recorder")}
            activity = httpx.post(f"{base}/v1/activities", headers=admin, json={
                "program_code": "B8", "organiser_unit_id": unit, "title": "压测 benchmark",
                "starts_at": f"{year}-01-01T00:00:00+08:00",
                "ends_at": f"{year}-12-31T23:00:00+08:00"}, timeout=30).json()["id"]

            def write(n: int, month: int = 1) -> Request:
                # Distinct volunteer-hours in the run's year: no overlaps.
                vid, hour = volunteers[n % len(volunteers)], n // len(volunteers)
                day, at = 1 + hour // 10 % 28, 8 + hour % 10
                start = f"{year}-{month:02d}-{day:02d}T{at:02d}:00:00+08:00"
                end = f"{year}-{month:02d}-{day:02d}T{at:02d}:45:00+08:00"
                return ("POST", "/v1/service-sessions", {
                    "volunteer_id": vid, "activity_id": activity, "started_at": start,
                    "ended_at": end, "source_record_id": f"bench-http-{port}-{month}-{n}"})

            scenarios: dict[str, Callable[[int], Request]] = {
                "healthz (baseline)": lambda n: ("GET", "/healthz", None),
                "volunteer hours": lambda n: (
                    "GET", f"/v1/volunteers/{volunteers[n % len(volunteers)]}/hours", None),
                "unit rankings": lambda n: (
                    "GET", "/v1/rankings/units?year=2017&kind=community&basis=members", None),
                "record session": write,
            }
            by_wrk = shutil.which("wrk") is not None

            def measure(make: Callable[[int], Request], clients: int,
                        month: int = 1) -> dict[str, Any]:
                method, path, _ = make(0)
                role = "committee" if method == "GET" else "recorder"
                if not by_wrk:
                    result = asyncio.run(_load(base, make, clients, total, seconds,
                                               tokens[role]))
                elif method == "POST":
                    result = _wrk(base, _session_posts(volunteers, activity, year, month,
                                                       f"bench-http-{port}-{month}"),
                                  clients, seconds, folder, tokens[role])
                else:
                    result = _wrk(base, _cycling_gets(list(dict.fromkeys(
                        make(n)[1] for n in range(len(volunteers))))),
                        clients, seconds, folder, tokens[role])
                if path != "/healthz":  # public: it reads no token
                    result["token"] = role
                return result

            results = {}
            # The write target (p99 < 30 ms) is a latency a single recorder sees; 50 clients
            # writing at once measure throughput, and their latency is mostly their queue.
            results["record session, 1 client"] = measure(lambda n: write(n, month=2), 1, 2)
            for name, make in scenarios.items():
                results[name] = measure(make, clients)
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            lines = Path(folder, "server.log").read_text("utf8", "replace").splitlines()
            errors = Counter(line.split(":", 1)[0] for line in lines
                             if re.match(r"^[\w.]+(Error|Exception): ", line))
    return {"clients": clients, "workers": WORKERS, "scenarios": results,
            "server_errors": dict(errors)}
