"""How refusals are plumbed: bodies that cannot be read, who is refused first, request ids."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from eventsourcing.persistence import InterfaceError, OperationalError

from api.limits import MAX_BODY_BYTES
from tests.api.conftest import ADMIN_TOKEN, District, bearer

JSON = {"Content-Type": "application/json"}
NOT_UTF_8 = b'{"name":"\xff\xfe","kind":"town"}'
TOO_DEEP = b'{"name":"x","kind":"town","p":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
VLEDGER = str(Path(sys.executable).parent / "vledger")


def _post_raw(district: District, path: str, content: bytes, token: str | None) -> Any:
    return district.client.post(path, content=content, headers={**JSON, **bearer(token)})


def _token(district: District, who: str) -> str | None:
    return {"nobody": None, "unknown": "vl_not-a-token-we-issued", "revoked": district.revoked,
            "admin": ADMIN_TOKEN, "auditor": district.auditor}[who]


@pytest.mark.parametrize("content", [NOT_UTF_8, TOO_DEEP, b"xx"],
                         ids=["not-utf-8", "nested-too-deeply", "not-json"])
def test_a_body_that_cannot_be_decoded_is_a_422_naming_the_body(district: District,
                                                                content: bytes) -> None:
    response = _post_raw(district, "/v1/units", content, ADMIN_TOKEN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422 and body["type"] and body["title"] and body["detail"]
    assert [e["field"] for e in body["errors"]] == ["body"]


@pytest.mark.parametrize("content", [NOT_UTF_8, TOO_DEEP, b"xx"],
                         ids=["not-utf-8", "nested-too-deeply", "not-json"])
@pytest.mark.parametrize("who", ["nobody", "unknown", "revoked"])
def test_a_body_that_cannot_be_decoded_is_a_401_without_a_valid_token(
        district: District, content: bytes, who: str) -> None:
    response = _post_raw(district, "/v1/units", content, _token(district, who))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("content", [NOT_UTF_8, b"xx"], ids=["not-utf-8", "not-json"])
def test_a_body_that_cannot_be_decoded_is_a_403_for_a_role_not_allowed(district: District,
                                                                       content: bytes) -> None:
    response = _post_raw(district, "/v1/service-sessions", content, district.auditor)
    assert response.status_code == 403, response.text


def test_a_body_that_cannot_be_decoded_is_a_422_for_a_role_allowed(district: District) -> None:
    response = _post_raw(district, "/v1/service-sessions", b"xx", district.recorder_a)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body"


def test_an_error_item_states_the_rule_without_its_field(district: District) -> None:
    response = district.session("2017-03-05T10:00:00+08:00", "2017-03-05T09:00:00+08:00", "r-1")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] == [{"field": "ended_at", "detail": "must be after started_at"}]
    assert body["detail"] == "ended_at must be after started_at"


def test_an_unknown_id_in_the_body_names_its_field_once(district: District) -> None:
    response = district.post("/v1/volunteers", {"name": "x", "home_unit_id": "unit-nope",
                                                "registered_on": "2017-01-01"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] == [{"field": "home_unit_id", "detail": "no unit with id 'unit-nope'"}]
    assert body["detail"] == "home_unit_id: no unit with id 'unit-nope'"


def test_the_command_line_names_the_field_of_an_unknown_unit_once(database_url: str) -> None:
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url}
    subprocess.run([VLEDGER, "init"], env=env, check=True, capture_output=True, timeout=120)
    created = subprocess.run([VLEDGER, "tokens", "create", "--role", "recorder",
                              "--unit", "unit-nope"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert created.returncode == 2
    assert " ".join(created.stderr.split()) == "unit_id: no unit with id 'unit-nope'"


@pytest.mark.parametrize("request_id", ["abc-123_X.y:z", "a" * 128])
def test_a_plain_request_id_of_the_client_is_echoed(district: District, request_id: str) -> None:
    response = district.client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["a" * 129, "a" * 20_000, "a b", "a/b", "a\tb",
                                        "é".encode()])
def test_a_long_or_unsafe_request_id_is_replaced_by_our_own(district: District,
                                                            request_id: str | bytes) -> None:
    response = district.client.get("/healthz", headers={"X-Request-ID": request_id})
    ours = response.headers["x-request-id"]
    assert ours != request_id and len(ours) == 32 and ours.isalnum()


@pytest.mark.parametrize(("who", "status"), [
    ("unknown", 401), ("revoked", 401), ("nobody", 404), ("admin", 404), ("auditor", 404)])
def test_an_unknown_path_is_a_401_for_an_unknown_or_revoked_token(district: District, who: str,
                                                                   status: int) -> None:
    response = district.get("/v1/no-such-thing", token=_token(district, who))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("who", "status"), [("unknown", 401), ("nobody", 405), ("admin", 405)])
def test_an_unknown_method_is_a_401_for_an_unknown_token(district: District, who: str,
                                                         status: int) -> None:
    response = district.client.delete("/v1/rankings/units", headers=bearer(_token(district, who)))
    assert response.status_code == status, response.text


def test_the_command_line_names_a_field_once_in_a_sentence_that_names_it(
        database_url: str) -> None:
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url}
    subprocess.run([VLEDGER, "init"], env=env, check=True, capture_output=True, timeout=120)
    created = subprocess.run([VLEDGER, "tokens", "create", "--role", "emperor"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert created.returncode == 2
    said = " ".join(created.stderr.split())
    assert said.startswith("role must be one of") and said.count("role") == 1, said


@pytest.mark.parametrize("error", [
    psycopg.OperationalError("server closed the connection unexpectedly"),
    OperationalError("the database is unavailable"),
    InterfaceError("connection already closed"),
], ids=["psycopg", "eventsourcing-operational", "eventsourcing-interface"])
def test_a_store_that_does_not_answer_is_a_503_to_try_again(
        district: District, error: Exception, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A dropped connection or a store being restarted is not the request's fault (no 500):
    the client is told to send it again shortly, and the log says what the store said."""
    models = district.client.app.state.services.models  # type: ignore[attr-defined]

    async def unavailable(volunteer_id: str) -> None:
        raise error

    monkeypatch.setattr(models, "volunteer_hours_async", unavailable)
    response = district.get(f"/v1/volunteers/{district.volunteer}/hours")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"].endswith("store-unavailable") and type(error).__name__ in body["detail"]
    logged = [r.getMessage() for r in caplog.records if r.name == "vledger.api"]
    assert any(str(error) in line and "/hours" in line for line in logged), logged


def test_a_body_over_the_limit_is_a_413_before_it_is_read(district: District) -> None:
    big = b'{"name":"' + b"x" * (MAX_BODY_BYTES + 1) + b'","kind":"town"}'
    declared = _post_raw(district, "/v1/units", big, ADMIN_TOKEN)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield big[:1024]
        yield big[1024:]

    streamed = district.client.post("/v1/units", content=chunks(),
                                    headers={**JSON, **bearer(ADMIN_TOKEN)})
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == ["body"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_a_json_body_sent_as_another_media_type_is_a_415(district: District,
                                                         content_type: str | None) -> None:
    headers = bearer(ADMIN_TOKEN) | ({"Content-Type": content_type} if content_type else {})
    response = district.client.post("/v1/units", content=b'{"name":"d","kind":"town"}',
                                    headers=headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    # The caller is still known first: a bad token is a 401 whatever the body.
    refused = district.client.post("/v1/units", content=b"{}", headers={
        **bearer("vl_not-a-token-we-issued"), "Content-Type": "text/plain"})
    assert refused.status_code == 401


def test_head_answers_what_get_would_without_a_body(district: District) -> None:
    for path in ("/healthz", "/v1/rankings/units?year=2017&kind=subdistrict"):
        got = district.client.get(path)
        head = district.client.head(path)
        assert head.status_code == got.status_code == 200, head.text
        assert head.headers["content-type"] == got.headers["content-type"]


def test_an_unexpected_failure_is_a_500_problem_with_its_request_id(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    services = district.client.app.state.services  # type: ignore[attr-defined]

    def broken(unit_id: str) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(services.ledger, "get_unit", broken)
    quiet = TestClient(district.client.app, raise_server_exceptions=False)
    response = quiet.get(f"/v1/units/{district.unit_a}", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["X-Request-ID"] == "req-42"
    assert response.headers["connection"] == "close"  # as the server then does (bb28 F1)
    body = response.json()
    assert (body["status"], body["type"].rsplit("/", 1)[1]) == (500, "internal-error")
    assert "req-42" in body["detail"] and "a bug of ours" not in body["detail"]


def test_a_query_parameter_the_route_does_not_take_is_a_422_naming_it(
        district: District) -> None:
    """A misspelt `yaer` answered the all-time ranking as if it were the year's."""
    public = district.client.get("/v1/rankings/units", params={"kind": "subdistrict",
                                                               "yaer": "2017"})
    assert public.status_code == 422
    [error] = public.json()["errors"]
    assert error["field"] == "yaer"
    assert "year" in error["detail"]
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours", colour="red", a="1")
    assert hours.status_code == 422
    assert [e["field"] for e in hours.json()["errors"]] == ["a", "colour"]
    # The caller is refused first; a route's own parameters and its dependencies' pass.
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours", token=None,
                        colour="red").status_code == 401
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours",
                        min_position="1").status_code == 200
    assert district.client.get("/v1/rankings/units", params={
        "kind": "subdistrict", "year": "2017", "limit": "1"}).status_code == 200
    assert district.get("/v1/events", after="0", limit="5").status_code == 200


def test_min_position_and_cache_busters_pass_everywhere_and_a_repeat_is_a_422(
        district: District) -> None:
    """API.md lets any read pass min_position; probes add `_=<time>`; `year` twice was
    answered with the last one."""
    for path in (f"/v1/units/{district.unit_a}", "/v1/events", "/v1/audit/checkpoint",
                 f"/v1/volunteers/{district.volunteer}"):
        assert district.get(path, min_position="1").status_code == 200, path
    assert district.get("/v1/events", min_position="x").status_code == 422
    assert district.client.get("/healthz", params={"_": "1700000000"}).status_code == 200
    twice = district.client.get("/v1/rankings/units?kind=subdistrict&year=2017&year=2018")
    assert twice.status_code == 422
    assert twice.json()["errors"][0]["field"] == "year"


@pytest.mark.parametrize("encoding", ["gzip", "br", "GZIP, identity"])
def test_a_body_with_a_content_encoding_is_a_415_naming_it(district: District,
                                                           encoding: str) -> None:
    # bb28 F4: a gzip body was "must be JSON text in UTF-8"; a plain one labelled br was taken.
    body = orjson.dumps({"name": "列东街道", "kind": "community"})
    sent = gzip.compress(body) if encoding == "gzip" else body
    response = district.client.post("/v1/units", content=sent, headers={
        **bearer(ADMIN_TOKEN), "Content-Type": "application/json",
        "Content-Encoding": encoding})
    assert response.status_code == 415, response.text
    assert response.json()["errors"][0]["field"] == "Content-Encoding"
    plain = district.client.post("/v1/units", content=body, headers={
        **bearer(ADMIN_TOKEN), "Content-Type": "application/json",
        "Content-Encoding": "identity"})
    assert plain.status_code == 201, plain.text


def test_every_content_encoding_line_counts_and_the_token_comes_first(
        district: District) -> None:
    # bb29 F3: "identity" then "gzip" on a second line got through; F4: an unknown token
    # with a Content-Encoding was a 415, where API.md says 401 everywhere.
    body = orjson.dumps({"name": "列东街道", "kind": "community"})
    two = district.client.post("/v1/units", content=body, headers=[
        *bearer(ADMIN_TOKEN).items(), ("Content-Type", "application/json"),
        ("Content-Encoding", "identity"), ("Content-Encoding", "gzip")])
    assert two.status_code == 415, two.text
    for token, status in (("not-a-token-of-ours", 401), (district.auditor, 403)):
        refused = district.client.post("/v1/units", content=gzip.compress(body), headers={
            **bearer(token), "Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert refused.status_code == status, refused.text


def test_a_number_too_long_to_read_is_named_as_such(district: District) -> None:
    # bb28 F3: "must be valid JSON (ValueError)" for valid JSON with a 5,000-digit number.
    response = district.client.put(
        "/v1/award-rules/best_project/2017", content=b'{"min_sessions": ' + b"9" * 5000 + b"}",
        headers={**bearer(ADMIN_TOKEN), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "more than 4,300 digits" in response.json()["detail"]


def test_a_flood_of_bad_fields_answers_the_first_hundred(district: District) -> None:
    # bb28 F5: 50,000 unknown keys answered 5 MB of errors.
    body = {"name": "列东街道", "kind": "community", **{f"k{i}": i for i in range(5000)}}
    response = district.post("/v1/units", body)
    assert response.status_code == 422, response.text
    found = response.json()
    assert len(found["errors"]) == 100 and "5,000 errors" in found["detail"]
    assert len(response.content) < 20_000


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\x7f"])
def test_a_control_character_is_named_by_code_point_not_by_a_pattern(
        district: District, ch: str) -> None:
    # bb29 F5: "String should match pattern '^[^\\x00-…]+$'" named no character.
    response = district.post("/v1/units", {"name": f"列东{ch}街道", "kind": "community"})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error == {"field": "name", "detail": "must not hold control characters (it holds "
                                                f"U+{ord(ch):04X})"}
    spaced = district.post("/v1/volunteers", {"name": "张三", "home_unit_id": "unit x",
                                              "registered_on": "2017-01-01"})
    assert "or spaces (it holds U+0020)" in spaced.json()["errors"][0]["detail"]
