"""/openapi.json tells the truth about errors, authentication, methods and answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from relaychat.app import create_app
from relaychat.settings import Settings
from tests.support.settings import TEST_JWT_SECRET

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings(jwt_secret=TEST_JWT_SECRET)).openapi()
    return document


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def test_errors_are_documented_as_problem_json(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        expected = ["401", "403", "404", "422", "429", "default"]
        if "requestBody" in operation:
            expected += ["409", "413", "415"]
        for status in expected:
            content = responses.get(status, {}).get("content")
            assert content == {"application/problem+json": {"schema": PROBLEM}}, (
                method,
                path,
                status,
            )
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])


def test_the_gateway_documents_the_api_key_header(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schema["paths"]["/api/external/messages"]["post"]["security"] == [{"ApiKey": []}]
    # People (bearer token) and systems (API key) share this path: either will do.
    shared = schema["paths"]["/api/messages/{conversation_id}"]["post"]["security"]
    assert {"ApiKey": []} in shared and {"HTTPBearer": []} in shared


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/messages/c1", "GET, POST"),
        ("/api/convos/c1", "DELETE, GET, PATCH"),
        ("/api/convos", "GET, POST"),
        ("/api/agents/a1", "DELETE, GET, PATCH"),
    ],
)
async def test_405_lists_every_allowed_method(path: str, allowed: str) -> None:
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        response = await http.put(path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["code"] == "method_not_allowed"


# Routes whose answer is not a JSON document, so they have no response model.
NOT_JSON: dict[tuple[str, str], str] = {
    ("GET", "/api/events"): "an SSE stream",
    ("GET", "/api/convos/{conversation_id}/events"): "an SSE stream",
    ("GET", "/metrics"): "the Prometheus text format",
    ("POST", "/api/channels/twilio/{channel_id}"): "TwiML for Twilio",
    ("POST", "/api/channels/twilio/{channel_id}/status/{message_id}"): "an empty answer to Twilio",
}


def _json_routes() -> list[tuple[str, str, APIRoute]]:
    """Every documented route with a body to answer: pages and static files (left out of
    the schema) and 204s (no body) have none."""
    app = create_app(Settings(jwt_secret=TEST_JWT_SECRET))
    routes: list[tuple[str, str, APIRoute]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if route.status_code == 204:
            continue
        routes += [(method, str(context.path), route) for method in sorted(context.methods or ())]
    return routes


def test_every_json_route_declares_a_response_model() -> None:
    routes = _json_routes()
    keys = {(method, path) for method, path, _ in routes}
    assert set(NOT_JSON) <= keys, "NOT_JSON names routes the app no longer has"
    for method, path, route in routes:
        if (method, path) in NOT_JSON:
            assert route.response_model is None, (method, path)
            continue
        # A pydantic model, so /openapi.json shows every field, never a bare dict or list.
        model = route.response_model
        assert isinstance(model, type) and issubclass(model, BaseModel), (method, path, model)
