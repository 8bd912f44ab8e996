"""/openapi.json tells the truth about errors, authentication and methods."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

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
