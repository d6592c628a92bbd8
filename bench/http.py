"""HTTP under 50 concurrent clients: the API served by uvicorn on 127.0.0.1, bounded load.

Each scenario stops after `total` requests or `seconds`, whichever comes first. The baseline is
`GET /healthz` on the same server: the floor of the framework, the server and the client.
"""

from __future__ import annotations

import asyncio
import os
import re
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

TOKEN = "bench-admin-token-not-secret"
Request = tuple[str, str, dict[str, Any] | None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(base: str, make: Callable[[int], Request], clients: int, total: int,
                seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    issued = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}"}
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
    return {"requests": len(ordered), "statuses": dict(statuses),
            "req_per_s": round(len(ordered) / elapsed, 1),
            "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)}


def _ids(ledger: Ledger, topic: str, limit: int) -> list[str]:
    page = ledger.recorder.select_notifications(1, limit, topics=[topic])
    return [str(n.originator_id) for n in page]


def http(url: str, clients: int = 50, total: int = 3000, seconds: float = 15) -> dict[str, Any]:
    """Start `uvicorn api.app:app_from_env`, run each scenario, stop the server."""
    import httpx

    ledger = Ledger(Settings(database_url=url))
    try:
        volunteers = _ids(ledger, "ledger.volunteers:Volunteer.Registered", 5000)
        unit = _ids(ledger, "ledger.units:Unit.Registered", 1)[0]
    finally:
        ledger.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "VLEDGER_DATABASE_URL": url, "VLEDGER_ADMIN_TOKEN": TOKEN,
               "VLEDGER_SIGNING_KEY_FILE": f"{folder}/bench.key"}
        server_log = open(f"{folder}/server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:app_from_env", "--factory", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env,
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
            activity = httpx.post(f"{base}/v1/activities", headers={
                "Authorization": f"Bearer {TOKEN}"}, json={
                "program_code": "B8", "organiser_unit_id": unit, "title": "压测 benchmark",
                "starts_at": "2018-01-01T00:00:00+08:00",
                "ends_at": "2018-12-31T23:00:00+08:00"}, timeout=30).json()["id"]

            def write(n: int) -> Request:
                # Distinct volunteer-hours in 2018, where the demo has no sessions: no overlaps.
                vid, hour = volunteers[n % len(volunteers)], n // len(volunteers)
                day, at = 1 + hour // 10, 8 + hour % 10
                start = f"2018-01-{day:02d}T{at:02d}:00:00+08:00"
                end = f"2018-01-{day:02d}T{at:02d}:45:00+08:00"
                return ("POST", "/v1/service-sessions", {
                    "volunteer_id": vid, "activity_id": activity, "started_at": start,
                    "ended_at": end, "source_record_id": f"bench-http-{port}-{n}"})

            scenarios: dict[str, Callable[[int], Request]] = {
                "healthz (baseline)": lambda n: ("GET", "/healthz", None),
                "volunteer hours": lambda n: (
                    "GET", f"/v1/volunteers/{volunteers[n % len(volunteers)]}/hours", None),
                "unit rankings": lambda n: (
                    "GET", "/v1/rankings/units?year=2017&kind=community&basis=members", None),
                "record session": write,
            }
            results = {name: asyncio.run(_load(base, make, clients, total, seconds))
                       for name, make in scenarios.items()}
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            lines = Path(folder, "server.log").read_text("utf8", "replace").splitlines()
            errors = Counter(line.split(":", 1)[0] for line in lines
                             if re.match(r"^[\w.]+(Error|Exception): ", line))
    return {"clients": clients, "scenarios": results, "server_errors": dict(errors)}
