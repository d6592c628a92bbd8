"""/metrics: one set of figures for the whole server, whichever worker a scrape reaches; the
events the server stored; how long each view's oldest unread event has waited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.serving import forget_dead_workers
from ledger import Settings
from tests.api.conftest import ADMIN_TOKEN, District, bearer


def figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_view(found: dict[tuple[str, tuple[tuple[str, str], ...]], float],
            name: str) -> dict[str, float]:
    return {dict(labels)["view"]: value for (n, labels), value in found.items() if n == name}


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return figures(response.text)


# -- in one process ---------------------------------------------------------------------------

def test_events_appended_counts_every_event_stored_and_nothing_else(district: District) -> None:
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    appended = ("vledger_events_appended_total", ())
    # A fresh store: every event in it (the catalogue, the district) was stored by this app.
    assert scrape(district.client)[appended] == ledger.head() > 0
    before = ledger.head()
    hours = [(f"2017-03-05T{h:02}:00:00+08:00", f"2017-03-05T{h + 1:02}:00:00+08:00")
             for h in (9, 11, 13)]
    batch = district.post("/v1/service-sessions/batch", {"records": [
        {"volunteer_id": district.volunteer, "activity_id": district.activity,
         "started_at": start, "ended_at": end, "source_record_id": f"m-{n}"}
        for n, (start, end) in enumerate(hours)]})
    assert batch.status_code == 200 and batch.json()["accepted"] == 3, batch.text
    stored = ledger.head() - before
    assert stored >= 3  # one answered position, several events
    assert scrape(district.client)[appended] == ledger.head()
    # What stores nothing counts nothing: a registration sent again, a repeated session.
    body = {"name": "列中社区", "kind": "community", "parent_id": district.unit_a}
    keyed = {**bearer(ADMIN_TOKEN), "Idempotency-Key": "metrics-1"}
    assert district.client.post("/v1/units", json=body, headers=keyed).status_code == 201
    assert district.client.post("/v1/units", json=body, headers=keyed).status_code == 200
    assert district.session(*hours[0], "m-0").status_code == 200
    assert scrape(district.client)[appended] == ledger.head()


def test_view_lag_seconds_is_the_age_of_the_oldest_event_a_view_has_not_read(
        settings: Settings) -> None:
    # Views kept by another process (none runs here): they stay where they are.
    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN,
                                             "inline_projections": False})
    with TestClient(create_app(configured)) as client:
        models = client.app.state.services.models  # type: ignore[attr-defined]
        written = client.post("/v1/units", json={"name": "街道", "kind": "subdistrict"},
                              headers=bearer(ADMIN_TOKEN))
        assert written.status_code == 201, written.text
        time.sleep(1.1)
        earlier = client.get("/readyz").json()["lag_seconds"]
        found = scrape(client)
        later = client.get("/readyz").json()["lag_seconds"]
        waited = by_view(found, "vledger_view_lag_seconds")
        lag = by_view(found, "vledger_view_lag_events")
        position = by_view(found, "vledger_view_position")
        head = written.json()["position"]
        assert found[("vledger_events_head", ())] == head
        assert {"hours", "credits"} <= set(waited) and set(waited) == set(lag) == set(position)
        for view in waited:
            assert lag[view] == head - position[view] > 0
            # readyz answers the oldest wait of all, rounded to the millisecond
            assert 1.1 <= earlier - 0.001 <= waited[view] <= later + 0.001 < 60
        models.catch_up()
        found = scrape(client)
        assert set(by_view(found, "vledger_view_lag_seconds").values()) == {0.0}
        assert set(by_view(found, "vledger_view_lag_events").values()) == {0.0}
        assert set(by_view(found, "vledger_view_position").values()) == {head}


def test_a_worker_that_is_gone_takes_its_live_gauges_and_leaves_its_counts(
        tmp_path: Path) -> None:
    for name in ("gauge_livemax_11.db", "gauge_livemostrecent_11.db", "counter_11.db",
                 "histogram_11.db", "gauge_livemax_12.db", "counter_12.db"):
        (tmp_path / name).write_bytes(b"")
    assert forget_dead_workers(str(tmp_path), {12, None}) == [11]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_11.db", "counter_12.db", "gauge_livemax_12.db", "histogram_11.db"]
