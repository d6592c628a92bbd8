"""Many clients writing at once through a real server: every write is answered, none is a 5xx."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.api.conftest import ADMIN_TOKEN

VLEDGER = str(Path(sys.executable).parent / "vledger")
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not start")


def test_forty_concurrent_session_writes_are_all_stored(database_url: str,
                                                        tmp_path: Path) -> None:
    port = _port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url,
           "VLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
           "VLEDGER_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}
    server = subprocess.Popen([VLEDGER, "serve", "--port", str(port), "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(base)
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            unit = client.post("/v1/units", json={"name": "列东街道", "kind": "subdistrict"})
            unit_id = unit.json()["id"]
            volunteers = [client.post("/v1/volunteers", json={
                "name": f"志愿者{i}", "home_unit_id": unit_id,
                "registered_on": "2017-01-01"}).json()["id"] for i in range(8)]
            activity = client.post("/v1/activities", json={
                "program_code": "B8", "organiser_unit_id": unit_id, "title": "巡逻",
                "starts_at": "2017-06-01T00:00:00+08:00",
                "ends_at": "2017-06-01T23:59:00+08:00"}).json()["id"]

            def write(n: int) -> int:
                hour = n // len(volunteers)
                response = client.post("/v1/service-sessions", json={
                    "volunteer_id": volunteers[n % len(volunteers)], "activity_id": activity,
                    "started_at": f"2017-06-01T{hour:02d}:00:00+08:00",
                    "ended_at": f"2017-06-01T{hour:02d}:30:00+08:00",
                    "source_record_id": f"concurrent-{n}"})
                return response.status_code

            with ThreadPoolExecutor(max_workers=20) as pool:
                codes = list(pool.map(write, range(40)))
            assert codes == [201] * 40
            totals = [client.get(f"/v1/volunteers/{v}/hours").json()["total_minutes"]
                      for v in volunteers]
            assert totals == [150] * 8
    finally:
        server.terminate()
        server.wait(timeout=15)
