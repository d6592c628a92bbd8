"""The OpenAPI document declares every answer the routes give, with its schema and headers."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

import api.routes
from api.app import create_app
from api.routes.audit import Checkpoint, Consistency, Feed, History, Inclusion
from ledger import Settings
from tests.api.conftest import District

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
# The fields API.md promises of each audit answer, and the model that documents it.
CONTRACT: dict[str, tuple[set[str], type[BaseModel]]] = {
    "/v1/audit/checkpoint": ({"tree_size", "root_hash", "signature", "key_id"}, Checkpoint),
    "/v1/audit/inclusion": ({"leaf_index", "tree_size", "leaf_hash", "hashes"}, Inclusion),
    "/v1/audit/consistency": ({"hashes"}, Consistency),
}


@pytest.fixture
def document(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()  # no store is opened: the app is never started


def _routes() -> list[APIRoute]:
    """Every documented route of every router module in api/routes/."""
    modules = [importlib.import_module(f"api.routes.{m.name}")
               for m in pkgutil.iter_modules(api.routes.__path__)]
    return [r for m in modules for r in m.router.routes
            if isinstance(r, APIRoute) and r.include_in_schema]


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _component(document: dict[str, Any], operation: dict[str, Any], code: str) -> Any:
    ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.stores("sqlite")
def test_every_route_that_answers_through_etagged_declares_its_304(
        document: dict[str, Any]) -> None:
    routes = _routes()
    tagged = {r.endpoint for r in routes if "etagged" in r.endpoint.__code__.co_names}
    versioned = {r.endpoint for r in routes if "not_modified" in r.endpoint.__code__.co_names}
    assert len(tagged) >= 7 and len(versioned) >= 2
    for route in routes:
        (method,) = route.methods
        operation = document["paths"][route.path][method.lower()]
        if route.endpoint not in tagged | versioned:
            assert "304" not in operation["responses"], route.path
            continue
        # Projection reads vary with the caller's token; a unit or a session at a version
        # does not.
        expected = {"ETag", "Vary"} if route.endpoint in tagged else {"ETag"}
        assert expected <= set(operation["responses"]["304"]["headers"]), route.path
        assert "ETag" in operation["responses"]["200"]["headers"], route.path
        assert "content" not in operation["responses"]["304"], route.path
        asked = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert ("header", "If-None-Match") in asked, route.path


@pytest.mark.stores("sqlite")
def test_every_operation_that_takes_a_body_declares_413_and_415(
        document: dict[str, Any]) -> None:
    with_body = [(path, method, op) for path, method, op in _operations(document)
                 if "requestBody" in op]
    assert len(with_body) >= 15
    for path, method, operation in with_body:
        assert {"413", "415"} <= set(operation["responses"]), (method, path)
    for path, method, operation in _operations(document):
        if "requestBody" not in operation:
            assert not {"413", "415"} & set(operation["responses"]), (method, path)


@pytest.mark.stores("sqlite")
def test_every_error_answer_is_documented_as_a_problem(
        document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        for code, response in operation["responses"].items():
            if code >= "400":
                assert response["content"] == PROBLEM, (method, path, code)


@pytest.mark.stores("sqlite")
def test_numeric_bounds_are_written_as_json_schema_knows_them(
        document: dict[str, Any]) -> None:
    """bb37 F2: the bounds of 32 whole-number parameters were written `ge`/`le`, which no
    client generator or validator reads."""
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("integer", "number"):
                found.extend(f"{where}: {k}" for k in ("ge", "le", "gt", "lt") if k in node)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, f"{where}/{n}")

    walk(document, "")
    assert not found, found
    limit = next(p for p in document["paths"]["/v1/events"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 10_000)


@pytest.mark.stores("sqlite")
def test_every_503_declares_retry_after(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        declared = operation["responses"]["503"].get("headers", {})
        assert "Retry-After" in declared, (method, path)
        # Only the probes answer some 503s without it (a store that does not answer at all).
        assert declared["Retry-After"].get("required", False) is (
            path not in ("/healthz", "/readyz")), (method, path)


@pytest.mark.stores("sqlite")
def test_only_checkpoints_and_inclusion_proofs_declare_audit_log_altered(
        document: dict[str, Any]) -> None:
    declared = {path for path, _, op in _operations(document) if "500" in op["responses"]}
    assert declared == {"/v1/audit/checkpoint", "/v1/audit/inclusion"}
    for path in declared:
        assert "audit-log-altered" in document["paths"][path]["get"]["responses"]["500"][
            "description"]


@pytest.mark.stores("sqlite")
def test_every_audit_answer_has_a_schema_with_the_contracts_fields_and_an_example(
        document: dict[str, Any]) -> None:
    for path, (fields, model) in CONTRACT.items():
        schema = _component(document, document["paths"][path]["get"], "200")
        assert schema["title"] == model.__name__, path
        assert fields <= set(schema["properties"]) == set(schema["required"]), path
        assert all(p.get("description") for p in schema["properties"].values()), path
        assert schema["examples"], path
        for example in schema["examples"]:
            assert set(model.model_validate(example).model_dump()) == set(example), path


def test_real_audit_answers_hold_exactly_the_documented_fields(district: District) -> None:
    document = district.get("/openapi.json", token=None).json()
    checkpoint = district.get("/v1/audit/checkpoint", token=district.auditor).json()
    answers = {
        "/v1/audit/checkpoint": checkpoint,
        "/v1/audit/inclusion": district.get("/v1/audit/inclusion", token=district.auditor,
                                            position=3).json(),
        "/v1/audit/consistency": district.get("/v1/audit/consistency", token=district.auditor,
                                              first=2, second=checkpoint["tree_size"]).json(),
    }
    for path, answer in answers.items():
        schema = _component(document, document["paths"][path]["get"], "200")
        model = CONTRACT[path][1]
        # Nothing the route answers is missing from its model, so filtering drops nothing.
        assert model.model_validate(answer).model_dump() == answer, path
        assert set(answer) == set(schema["properties"]), path


def test_real_history_and_feed_entries_hold_exactly_the_documented_fields(
        district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T11:00:00+08:00", "doc-1")
    history = district.get(f"/v1/volunteers/{district.volunteer}/history",
                           token=district.auditor).json()
    feed = district.get("/v1/events", token=district.auditor, limit=10_000).json()
    for answer, model in ((history, History), (feed, Feed)):
        assert any(e["valid_time"] for e in answer["events"])
        assert model.model_validate(answer).model_dump() == answer


def test_the_docs_pages_load_every_script_and_style_from_the_server(district: District) -> None:
    """bb15 F7: /docs loaded Swagger UI from a CDN, and a browser without internet access
    showed a blank page. Every asset the pages name is served here, and none is external."""
    import re

    for page in ("/docs", "/redoc"):
        html = district.client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and not [a for a in assets if "//" in a], (page, assets)
        for asset in assets:
            served = district.client.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
    script = district.client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "3.1" in script  # a Swagger UI that reads OpenAPI 3.1, as FastAPI writes it
    assert district.client.get("/docs/assets/nothing.js").status_code == 404


@pytest.mark.stores("sqlite")
def test_operations_declare_only_the_errors_they_can_answer(document: dict[str, Any]) -> None:
    """bb15 F6: every operation declared 401, 403, 404, 409 and 422, /healthz included. A
    public route refuses no role (403), a path without an id has no unknown id (404), and a
    read contradicts nothing unless an old cursor's list changed (409). The fuzz test
    (test_openapi_fuzz.py) holds every answer to the statuses its operation declares."""
    def codes(path: str, method: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    assert {"403", "404", "409"}.isdisjoint(codes("/healthz", "get"))
    assert {"401", "422", "503"} <= codes("/healthz", "get")
    assert "403" not in codes("/v1/rankings/units", "get")
    assert {"409", "422"} <= codes("/v1/rankings/units", "get")  # a stale cursor
    assert {"403", "404", "409", "412"} <= codes("/v1/units/{unit_id}", "patch")
    assert "404" not in codes("/v1/service-sessions", "post")
    assert "409" not in codes("/v1/volunteers/{volunteer_id}/hours", "get")


@pytest.mark.stores("sqlite")
def test_every_example_holds_to_its_own_schema(document: dict[str, Any]) -> None:
    """bb37 F3: the lists' examples lost their null members (`next_cursor`) in the document
    and failed their own schemas."""
    import jsonschema_rs

    checked = 0
    for name, schema in document["components"]["schemas"].items():
        root = {"components": document["components"], "$ref": f"#/components/schemas/{name}"}
        validator = jsonschema_rs.Draft202012Validator(root)
        for example in schema.get("examples", []):
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (name, errors)
            checked += 1
    assert checked >= 10, checked
