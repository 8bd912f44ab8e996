"""The /v1 application is mounted with its own OpenAPI document."""

from __future__ import annotations

import httpx
import pytest

from relaychat.app import create_app
from relaychat.domain.openai_compat import catalog
from relaychat.services import Services
from tests.support.factories import make_key, make_user
from tests.support.log_capture import lines, watch

HELLO = [{"role": "user", "content": "hello"}]


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


async def test_calls_and_refusals_name_the_route_in_the_access_line_and_the_audit(
    client: httpx.AsyncClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # A valid call is served before routing (openai_api/app.py V1Front), a body the schema
    # refuses and a header over its limit by the route: both ways log and audit alike.
    owner = await make_user(client)
    key = await make_key(client, owner)
    auth = {"Authorization": f"Bearer {key.secret}"}
    call = {"model": "fake/fake-model", "messages": HELLO, "store": False}
    watch(caplog)
    answers = [
        await client.post("/v1/chat/completions", json=call, headers=auth),
        await client.post("/v1/chat/completions", json={"model": 3}, headers=auth),
        await client.post(
            "/v1/chat/completions",
            json=call,
            headers={**auth, "x-relaychat-conversation-id": "c" * 129},
        ),
        await client.get("/v1/models", headers=auth),
    ]
    assert [a.status_code for a in answers] == [200, 400, 400, 200]
    assert answers[1].json()["error"]["type"] == "invalid_request_error"
    assert answers[2].json()["error"]["param"] == "header.x-relaychat-conversation-id"
    assert [r.path for r in lines(caplog, "relaychat.access")] == [  # type: ignore[attr-defined]
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/models",
    ]
    await services.audit.flush()
    rows = (await client.get(f"/api/keys/{key.id}/audit", headers=owner.headers)).json()["events"]
    assert [(r["path"], r["status"], r["outcome"]) for r in reversed(rows)] == [
        ("/v1/chat/completions", 200, "accepted"),
        ("/v1/chat/completions", 400, "refused"),
        ("/v1/chat/completions", 400, "refused"),
        ("/v1/models", 200, "accepted"),
    ]


async def test_an_unexpected_failure_is_a_500_in_openais_shape_and_audited(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(catalog, "resolve", broken)
    app = create_app(services=services)
    # As a server: the exception still reaches it (to be logged) after the answer is sent.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        owner = await make_user(http)
        key = await make_key(http, owner)
        answer = await http.post(
            "/v1/chat/completions",
            json={"model": "fake/fake-model", "messages": HELLO},
            headers={"Authorization": f"Bearer {key.secret}"},
        )
        assert answer.status_code == 500
        assert answer.json()["error"] == {
            "message": "internal error",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
        await services.audit.flush()
        audit = await http.get(f"/api/keys/{key.id}/audit", headers=owner.headers)
    [row] = audit.json()["events"]
    assert (row["status"], row["outcome"], row["reason"]) == (500, "refused", "internal_error")
