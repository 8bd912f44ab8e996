"""The /v1 application is mounted with its own OpenAPI document."""

from __future__ import annotations

import httpx


async def test_v1_describes_itself(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/openapi.json")
    assert answer.status_code == 200
    assert sorted(answer.json()["paths"]) == [
        "/chat/completions",
        "/models",
        "/models/{model}",
        "/responses",
        "/responses/{response_id}",
    ]
    assert "/v1/chat/completions" not in (await client.get("/openapi.json")).json()["paths"]
