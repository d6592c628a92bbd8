"""Liveness, readiness and metrics, as an operator's probes see them."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
import pytest
from eventsourcing.persistence import StoredEvent

from tests.api.conftest import District


def test_a_healthy_service_is_live_and_ready(district: District) -> None:
    health = district.get("/healthz", token=None)
    assert health.status_code == 200 and health.json()["head"] > 0
    ready = district.get("/readyz", token=None)
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert {"hours", "credits"} <= set(ready.json()["views"])


def test_views_stopped_at_an_unreadable_event_are_not_ready_and_say_where(
        district: District) -> None:
    services = district.client.app.state.services  # type: ignore[attr-defined]
    # Written past the ledger (which refuses what it could not read back), e.g. by a faulty
    # migration: the views cannot fold it and stop before it.
    before = services.ledger.head()
    services.ledger.recorder.insert_events([StoredEvent(
        originator_id="unit-broken", originator_version=1,
        topic="ledger.units:Unit.Registered", state=b"{not json")])
    with pytest.raises(Exception):  # noqa: B017 - whatever the decoder raises
        services.models.catch_up()
    ready = district.get("/readyz", token=None)
    assert ready.status_code == 503
    # They stay where they are: the page holding the bad event never commits.
    stopped = services.models.position()
    assert stopped <= before
    assert f"stopped at position {stopped}: JSONDecodeError" in ready.json()["detail"]
    assert district.get("/healthz", token=None).status_code == 200  # the store still answers


def test_metrics_count_requests_by_route_and_status(district: District) -> None:
    district.get("/v1/rankings/units", token=None, kind="town")
    text = district.get("/metrics", token=None).text
    assert 'route="/v1/rankings/units"' in text and "vledger_" in text


def test_health_hours_and_rankings_are_read_without_a_worker_thread(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    # ViewStore.read: on SQLite the hot reads run on the event loop; on PostgreSQL they go
    # through psycopg's asynchronous pool. Neither hops to a worker thread.
    store = district.client.app.state.services.models.store  # type: ignore[attr-defined]
    ranking = {"kind": "subdistrict"}
    assert district.get("/v1/rankings/units", **ranking).status_code == 200  # now remembered
    hops: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def hop(*args: Any, **kwargs: Any) -> Any:
            hops.append(name)
            return real(*args, **kwargs)
        return hop

    monkeypatch.setattr(anyio.to_thread, "run_sync",
                        counted("anyio", anyio.to_thread.run_sync))
    monkeypatch.setattr(asyncio, "to_thread", counted("asyncio", asyncio.to_thread))
    before = store._async_pool.get_stats().get("requests_num", 0) if store.postgres else 0
    assert district.get("/healthz", token=None).status_code == 200
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").status_code == 200
    assert district.get("/v1/rankings/units", **ranking).status_code == 200
    assert hops == []
    if store.postgres:  # health 1 statement, hours 1, the remembered ranking its position
        assert store._async_pool.get_stats()["requests_num"] - before >= 3
    else:
        assert store._async_pool is None


def test_health_reports_the_same_head_as_the_ledger(district: District) -> None:
    services = district.client.app.state.services  # type: ignore[attr-defined]
    assert district.get("/healthz", token=None).json()["head"] == services.ledger.head()


def test_the_documents_list_every_tag_in_reading_order(district: District) -> None:
    # Routers are matched hot reads first (api/app.py); /docs keeps its order by the tags.
    from api.app import TAG_ORDER

    doc = district.get("/openapi.json", token=None).json()
    used = {tag for path in doc["paths"].values() for op in path.values() for tag in op["tags"]}
    assert [t["name"] for t in doc["tags"]] == list(TAG_ORDER)
    assert used == set(TAG_ORDER)
