"""An API on a real store (SQLite file and PostgreSQL schema), and a small district in it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger import Settings

ADMIN_TOKEN = "test-admin-token-0123456789"
T0 = "2017-03-05T08:00:00+08:00"
T1 = "2017-03-05T18:00:00+08:00"


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def client(settings: Settings, tmp_path: Any) -> Iterator[TestClient]:
    """A client of an app on an empty store, with a known admin token."""
    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN, "read_wait_seconds": 0.5})
    with TestClient(create_app(configured)) as the_client:
        yield the_client


@dataclass
class District:
    """Two subdistricts with a recorder each, a committee, an auditor, a volunteer, an activity."""

    client: TestClient
    unit_a: str
    unit_b: str
    recorder_a: str
    recorder_b: str
    committee: str
    auditor: str
    revoked: str
    volunteer: str
    activity: str

    def post(self, path: str, body: Any, token: str | None = ADMIN_TOKEN) -> Any:
        return self.client.post(path, json=body, headers=bearer(token))

    def get(self, path: str, token: str | None = ADMIN_TOKEN, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=bearer(token))

    def session(self, start: str, end: str, source: str, volunteer: str | None = None,
                activity: str | None = None, token: str | None = ADMIN_TOKEN) -> Any:
        return self.post("/v1/service-sessions", {
            "volunteer_id": volunteer or self.volunteer, "activity_id": activity or self.activity,
            "started_at": start, "ended_at": end, "source_record_id": source}, token)


def issue(client: TestClient, role: str, unit_id: str | None = None) -> str:
    body = {"role": role, "unit_id": unit_id, "label": f"test {role}"}
    response = client.post("/v1/tokens", json=body, headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture
def district(client: TestClient) -> District:
    """A small district built through the API itself."""
    def post(path: str, body: Any) -> Any:
        response = client.post(path, json=body, headers=bearer(ADMIN_TOKEN))
        assert response.status_code == 201, response.text
        return response.json()

    root = post("/v1/units", {"name": "梅列区", "kind": "district"})["id"]
    unit_a = post("/v1/units", {"name": "列东街道", "kind": "subdistrict", "parent_id": root})["id"]
    unit_b = post("/v1/units", {"name": "列西街道", "kind": "subdistrict", "parent_id": root})["id"]
    volunteer = post("/v1/volunteers", {
        "name": "林小梅", "home_unit_id": unit_a, "registered_on": "2017-01-10",
        "phone": "13805981234", "id_number": "350402199001011234"})["id"]
    activity = post("/v1/activities", {
        "program_code": "B5", "organiser_unit_id": unit_a, "title": "学雷锋纪念日",
        "starts_at": T0, "ends_at": T1})["id"]
    revoked = issue(client, "auditor")
    listed = client.get("/v1/tokens", headers=bearer(ADMIN_TOKEN)).json()["items"]
    token_id = next(t["id"] for t in listed if t["label"] == "test auditor")
    response = client.post(f"/v1/tokens/{token_id}/revoke", json={"reason": "left"},
                           headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200, response.text
    return District(
        client=client, unit_a=unit_a, unit_b=unit_b,
        recorder_a=issue(client, "recorder", unit_a), recorder_b=issue(client, "recorder", unit_b),
        committee=issue(client, "committee"), auditor=issue(client, "auditor"), revoked=revoked,
        volunteer=volunteer, activity=activity,
    )
