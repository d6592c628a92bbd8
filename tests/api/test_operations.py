"""Liveness, readiness and metrics, as an operator's probes see them."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import anyio.to_thread
import pytest
from eventsourcing.persistence import StoredEvent

from projections.runner import ViewStatus
from tests.api.conftest import District


def test_a_healthy_service_is_live_and_ready(district: District) -> None:
    health = district.get("/healthz", token=None)
    assert health.status_code == 200 and health.json()["head"] > 0
    ready = district.get("/readyz", token=None)
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert {"hours", "credits"} <= set(ready.json()["views"])


def test_readiness_gives_the_audit_logs_state(district: District) -> None:
    services = district.client.app.state.services  # type: ignore[attr-defined]
    audit = district.get("/readyz", token=None).json()["audit"]
    assert audit["checked_position"] == services.ledger.head()
    assert audit["lag"] == 0 and audit["lag_seconds"] == 0 and audit["within_lag"] is True
    checkpoint = district.get("/v1/audit/checkpoint", token=district.auditor).json()
    audit = district.get("/readyz", token=None).json()["audit"]
    assert audit["checkpoint"]["tree_size"] == checkpoint["tree_size"]


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


def test_a_store_that_does_not_answer_makes_the_service_unready_not_failing(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = district.client.app.state.services.models.runner  # type: ignore[attr-defined]

    def pool_exhausted() -> None:
        raise TimeoutError("couldn't get a connection after 30.00 sec")

    monkeypatch.setattr(runner, "status", pool_exhausted)
    ready = district.get("/readyz", token=None)
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
    assert "does not answer" in ready.json()["detail"]


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


def test_while_another_holds_views_started_again_writes_answer_and_reads_say_503(
        district: District) -> None:
    """A rebuild in another thread or process has started the views again and holds them (a
    long rebuild, or one stalled): a write is answered in time, since it is stored; a read
    that waits for it, or for a volunteer the views do not hold yet, is a 503 with
    Retry-After, not a stale answer, a 404 or a wait without end."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    runner = services.models.runner
    before = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert runner._lock.acquire(timeout=10)  # the views are held from here on
    try:
        with services.models.store.transaction() as cur:  # started again from 0, committed
            for projection in runner.projections:
                projection.drop(cur)
                projection.create(cur)
            cur.execute("UPDATE projection_positions SET position = 0")
        began = time.monotonic()
        written = district.post("/v1/units", {"name": "新街道", "kind": "subdistrict"})
        assert written.status_code == 201, written.text
        stale = district.get(f"/v1/volunteers/{district.volunteer}/hours",
                             min_position=written.json()["position"])
        assert stale.status_code == 503 and stale.headers["retry-after"], stale.text
        known = district.get(f"/v1/volunteers/{district.volunteer}/hours")
        assert known.status_code == 503 and known.json()["type"].endswith("/views-behind"), \
            known.text
        history = district.get(f"/v1/volunteers/{district.volunteer}/history",
                               token=district.auditor)
        assert history.status_code == 503, history.text
        assert time.monotonic() - began < 10  # each waited about read_wait_seconds (0.5 s)
    finally:
        runner._lock.release()
    after = district.get(f"/v1/volunteers/{district.volunteer}/hours",
                         min_position=written.json()["position"])
    assert after.status_code == 200
    assert {k: v for k, v in after.json().items() if k != "position"} == {
        k: v for k, v in before.items() if k != "position"}


def _work(settings: Any) -> None:
    """What `vledger projections run` does: bring the views up to date, in another ledger."""
    from ledger import Ledger
    from projections import ReadModels
    from projections.models import auditor_views

    worker = Ledger(settings)
    models = ReadModels(worker, extra=auditor_views())
    try:
        models.catch_up()
    finally:
        models.close()
        worker.close()


def test_an_api_without_inline_views_leaves_them_to_the_worker_and_waits_for_it(
        settings: Any) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import ADMIN_TOKEN, bearer

    configured = settings.model_copy(update={
        "admin_token": ADMIN_TOKEN, "read_wait_seconds": 0.5, "inline_projections": False,
        "max_view_lag_events": 0})
    with TestClient(create_app(configured)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        written = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                              headers=bearer(ADMIN_TOKEN))
        assert written.status_code == 201, written.text
        position = written.json()["position"]
        time.sleep(1.5)  # an API that followed the log would have caught up by now
        assert services.models.position() < position
        waited = client.get("/v1/rankings/units", params={
            "kind": "subdistrict", "min_position": position})
        assert waited.status_code == 503 and waited.headers["retry-after"]
        assert "`vledger projections run`: is it running?" in waited.json()["detail"]  # F11
        unready = client.get("/readyz")
        assert unready.status_code == 503
        assert "`vledger projections run`: is it running?" in unready.json()["detail"]
        assert services.models.position() < position  # it did not fold the views itself
        # A read that answers only from views holding every event names who keeps them
        # (bb19: it sent the operator after a rebuild while the worker had stopped).
        checkpoint = client.get("/v1/audit/checkpoint")
        assert checkpoint.status_code == 503
        assert "`vledger projections run`: is it running?" in checkpoint.json()["detail"]

        _work(configured)
        ranked = client.get("/v1/rankings/units", params={
            "kind": "subdistrict", "min_position": position})
        assert ranked.status_code == 200, ranked.text
        assert [i["name"] for i in ranked.json()["items"]] == ["街道"]


def test_a_candidate_the_worker_has_not_read_yet_is_a_503_not_a_404(settings: Any) -> None:
    # bb24 F2: eligibility answered 404 "not a candidate" for a volunteer registered after
    # what the worker had read; hours waited and answered 503. Both wait now.
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import ADMIN_TOKEN, bearer

    configured = settings.model_copy(update={
        "admin_token": ADMIN_TOKEN, "read_wait_seconds": 0.5, "inline_projections": False,
        "max_view_lag_events": 0})
    admin = bearer(ADMIN_TOKEN)
    with TestClient(create_app(configured)) as client:
        unit = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                           headers=admin).json()["id"]
        assert client.put("/v1/award-rules/most_beautiful_volunteer/2017",
                          json={"min_hours_in_year": 1}, headers=admin).status_code == 200
        _work(configured)
        late = client.post("/v1/volunteers", json={
            "name": "新人", "home_unit_id": unit, "registered_on": "2017-01-01"},
            headers=admin).json()["id"]
        path = f"/v1/eligibility/most_beautiful_volunteer/2017/{late}"
        waited = client.get(path, headers=admin)
        assert waited.status_code == 503 and waited.headers["retry-after"], waited.text
        # bb27 F2: what no view can ever list is a 404 at once, views behind or not.
        for nobody in ("vol-nobody", unit):
            refused = client.get(f"/v1/eligibility/most_beautiful_volunteer/2017/{nobody}",
                                 headers=admin)
            assert refused.status_code == 404, refused.text
        _work(configured)
        answered = client.get(path, headers=admin)
        assert answered.status_code == 200, answered.text
        assert answered.json()["items"][0]["candidate_id"] == late
        unknown = client.get("/v1/eligibility/most_beautiful_volunteer/2017/vol-nobody",
                             headers=admin)
        assert unknown.status_code == 404, unknown.text


def test_readers_waiting_for_a_worker_hold_no_thread_a_write_needs(settings: Any) -> None:
    """Views kept by another process: readers waiting with `min_position` watch the stored
    position from the event loop. With one worker thread left, a write sent while three
    readers wait is answered before their waits end (holding a thread each, they would
    keep it out until the first gave up)."""
    import threading

    import anyio.to_thread
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import ADMIN_TOKEN, bearer

    configured = settings.model_copy(update={
        "admin_token": ADMIN_TOKEN, "read_wait_seconds": 2.0, "inline_projections": False})
    with TestClient(create_app(configured)) as client:
        def one_thread() -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = 1

        client.portal.call(one_thread)  # type: ignore[union-attr]
        written = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                              headers=bearer(ADMIN_TOKEN))
        position = written.json()["position"]
        ended: dict[str, float] = {}

        def wait(n: int) -> None:
            answer = client.get("/v1/rankings/units", params={
                "kind": "subdistrict", "min_position": position})
            assert answer.status_code == 503, answer.text
            ended[f"reader {n}"] = time.monotonic()

        readers = [threading.Thread(target=wait, args=(n,)) for n in range(3)]
        for reader in readers:
            reader.start()
        time.sleep(0.3)
        second = client.post("/v1/units", json={"name": "社区", "kind": "community"},
                             headers=bearer(ADMIN_TOKEN))
        wrote = time.monotonic()
        for reader in readers:
            reader.join()
        assert second.status_code == 201, second.text
        assert len(ended) == 3 and wrote < min(ended.values()), (wrote, ended)


def test_views_being_filled_from_empty_answer_503_not_zeros(district: District) -> None:
    """A rebuild (here: its first transaction, committed, then stalled) stages the views'
    rows and groups them at its end: until then every read would count zeros."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    runner = services.models.runner
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").status_code == 200
    assert runner._lock.acquire(timeout=10)
    try:
        with services.models.store.transaction() as cur:  # started again, one page folded
            for projection in runner.projections:
                projection.drop(cur)
                projection.create(cur)
            cur.execute("UPDATE projection_positions SET position = 0")
        pages = services.ledger.recorder.select_notifications(1, 1_000_000)
        with services.models.store.transaction() as cur:
            from projections.feed import decode_page
            for projection in runner.projections:
                projection.apply(cur, decode_page(pages))
        for path, params in ((f"/v1/volunteers/{district.volunteer}/hours", {}),
                             ("/v1/rankings/units", {"kind": "subdistrict"}),
                             ("/v1/bulletins/2017/1", {})):
            read = district.get(path, **params)
            assert read.status_code == 503, (path, read.text)
            assert read.json()["type"].endswith("/views-behind") and read.headers["retry-after"]
    finally:
        runner._lock.release()


@pytest.mark.parametrize(("waited", "status"), [(2.0, 200), (45.0, 503)])
def test_a_small_lag_that_does_not_pass_makes_the_service_unready(
        district: District, monkeypatch: pytest.MonkeyPatch, waited: float,
        status: int) -> None:
    """A stopped projections worker leaves the views a few events behind for ever: under the
    events limit, but the oldest unread event has waited longer than the seconds limit."""
    models = district.client.app.state.services.models  # type: ignore[attr-defined]
    head = models.ledger.head()
    views = [ViewStatus("hours", head - 1, head, time.time()),
             ViewStatus("credits", head, head, time.time())]
    monkeypatch.setattr(models.runner, "status", lambda: views)
    asked: list[int] = []
    monkeypatch.setattr(models, "lag_seconds", lambda position: asked.append(position) or waited)
    ready = district.get("/readyz", token=None)
    assert ready.status_code == status, ready.text
    assert asked == [head - 1]
    if status == 503:
        assert "waited 45.0 s" in ready.json()["detail"] and ready.headers["retry-after"] == "1"
    else:
        assert ready.json()["lag_seconds"] == 2.0


def test_probes_answer_503_in_time_while_the_store_hangs(district: District,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """During an unplanned failover the pools wait 10-30 s for a connection, and /readyz was
    held up to 62 s (the replica/failover experiment): a load balancer's check must be
    answered. Both probes answer 503 once the store took PROBE_SECONDS."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    monkeypatch.setattr("api.routes.operations.PROBE_SECONDS", 0.2)

    def hangs(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        raise AssertionError("never answered in time")

    async def hangs_async(*args: Any, **kwargs: Any) -> Any:
        try:
            await asyncio.sleep(1.5)
        except asyncio.CancelledError:
            # psycopg cancels a query by asking the server, which a hung server does not
            # answer: the probe must not wait for that (bb13 F5: 12 s for a "2 s" 503).
            time.sleep(1.5)
            raise
        raise AssertionError("never answered in time")

    monkeypatch.setattr(services.models.runner, "status", hangs)
    monkeypatch.setattr(services.models, "head_async", hangs_async)
    for path in ("/readyz", "/healthz"):
        began = time.monotonic()
        response = district.get(path, token=None)
        assert time.monotonic() - began < 1.0, path
        assert response.status_code == 503, response.text
        assert "did not answer within 0.2 s" in response.json()["detail"]
        assert response.headers["retry-after"] == "1"


def test_large_answers_are_compressed_for_clients_that_accept_gzip(district: District) -> None:
    """bb34 F3: an eligibility list of 44,000 candidates was 19.7 MB on the wire. An answer of
    16 KiB or more goes gzip-compressed to a client that accepts it, the same JSON once
    decoded; a client that does not ask gets it plain; a small answer is never compressed."""
    from api.limits import COMPRESS_FROM_BYTES
    from tests.api.conftest import ADMIN_TOKEN, bearer

    for n in range(40):  # a feed page well over the bound
        assert district.session(f"2017-03-05T{8 + n // 6:02d}:{n % 6 * 10:02d}:00+08:00",
                                f"2017-03-05T{8 + n // 6:02d}:{n % 6 * 10 + 5:02d}:00+08:00",
                                f"gz-{n}").status_code == 201
    asked = {**bearer(ADMIN_TOKEN), "Accept-Encoding": "gzip"}
    plain = district.client.get("/v1/events", headers={**bearer(ADMIN_TOKEN),
                                                        "Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) >= COMPRESS_FROM_BYTES
    packed = district.client.get("/v1/events", headers=asked)
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in packed.headers["vary"].lower()
    assert int(packed.headers["content-length"]) < int(plain.headers["content-length"]) / 4
    assert packed.json() == plain.json()  # httpx decodes it
    for refused in ("gzip;q=0", "identity, gzip; q=0.0", "deflate"):  # bb36 F10
        plain_again = district.client.get("/v1/events", headers={
            **bearer(ADMIN_TOKEN), "Accept-Encoding": refused})
        assert "content-encoding" not in plain_again.headers, refused
    hours = district.client.get(f"/v1/volunteers/{district.volunteer}/hours", headers=asked)
    assert hours.status_code == 200 and "content-encoding" not in hours.headers


def test_a_server_sweeps_the_audit_log_by_itself_and_reports_what_it_found(
        settings: Any) -> None:
    """bb33: a changed event under intact leaves was found only when someone ran verify or
    asked for it. The server sweeps every VLEDGER_AUDIT_SWEEP_SECONDS, and /readyz and
    /metrics say what the last sweep found, on every worker."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import ADMIN_TOKEN, bearer
    from tests.factories import tamper_with_events

    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN,
                                             "audit_sweep_seconds": 0.3})

    def swept_after(client: TestClient, moment: float) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            sweep = client.get("/readyz").json()["audit"]["sweep"]
            if sweep is not None and datetime.fromisoformat(sweep["finished_at"]).timestamp(
                    ) > moment:
                return sweep
            time.sleep(0.1)
        raise AssertionError("no sweep")

    with TestClient(create_app(configured)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        unit = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                           headers=bearer(ADMIN_TOKEN)).json()["position"]
        client.post("/v1/units", json={"name": "社区", "kind": "community"},
                    headers=bearer(ADMIN_TOKEN))
        sweep = swept_after(client, time.time())
        assert sweep["ok"] is True and sweep["altered"] == 0
        assert sweep["events"] == services.ledger.head()
        scraped = client.get("/metrics").text
        assert "vledger_audit_altered_events 0.0" in scraped
        assert "vledger_snapshots_refused 0.0" in scraped
        changed = time.time()
        tamper_with_events(services.models.store, services.ledger,
                           "UPDATE {table} SET state = ? WHERE {id} = ?", (b'{"x":1}', unit))
        sweep = swept_after(client, changed)
        assert sweep["ok"] is False and sweep["first_altered"] == [unit]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "altered"
        assert f"(position {unit})" in sweep["detail"]
        assert "vledger_audit_altered_events 1.0" in client.get("/metrics").text


def test_readiness_names_a_deleted_published_checkpoint_without_waiting_for_a_sweep(
        district: District) -> None:
    """bb39 F8: with the published row deleted on a running server and a write after it, the
    checkpoint route answered 500 while /readyz said ok until the hourly sweep ran."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    assert district.get("/v1/audit/checkpoint", token=None).status_code == 200
    ready = district.get("/readyz", token=None).json()
    assert ready["status"] == "ok" and ready.get("detail") is None
    assert ready["audit"].get("checkpoint_refused") is None
    with services.models.store.transaction() as cur:
        cur.execute("DELETE FROM audit_published")
    written = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "f8")
    assert written.status_code == 201, written.text
    refused = district.get("/v1/audit/checkpoint", token=None)
    assert refused.status_code == 500, refused.text
    ready = district.get("/readyz", token=None)
    assert ready.status_code == 200, ready.text
    said = ready.json()
    assert said["status"] == "altered", said  # before any sweep
    assert said["audit"]["sweep"] is None
    assert "published checkpoints were deleted" in said["detail"]
    assert said["audit"]["checkpoint_refused"] == refused.json()["detail"]
