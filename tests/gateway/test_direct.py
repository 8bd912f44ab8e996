"""`POST /api/messages/{id}` from machines, answered in front of FastAPI's routing
(relaychat.gateway.direct): the same answers as the route gives, for every kind of body."""

from __future__ import annotations

import types
from typing import Any

import httpx
import pytest

from relaychat.api import messages as messages_route
from relaychat.gateway import external as external_gateway
from tests.support.factories import make_conversation, make_user
from tests.support.settings import VERBATIM_KEY

DIRECT = {"x-api-key": VERBATIM_KEY}
# The same key as a bearer token: a machine's request the direct path leaves to the route.
ROUTED = {"authorization": f"Bearer {VERBATIM_KEY}"}

BODIES: dict[str, Any] = {
    "valid": {"role": "external", "content": "hello", "respond": False},
    "parts": {"role": "external", "content": [{"type": "text", "text": "hi"}], "respond": False},
    "extra field": {"role": "external", "content": "x", "respond": False, "colour": "red"},
    "no content": {"role": "external", "respond": False},
    "bad respond": {"role": "external", "content": "x", "respond": "maybe"},
    "blank text": {"role": "external", "content": "   ", "respond": False},
    "not an object": ["role", "external"],
    "long parent": {"role": "external", "content": "x", "parent_message_id": "p" * 65},
}


def comparable(answer: httpx.Response) -> dict[str, Any]:
    """What must agree between the two ways: status, and the problem or the message shape."""
    body = answer.json()
    if answer.status_code >= 400:
        # Each request has its own id (and `instance` differs by design).
        problem = {k: v for k, v in body.items() if k not in ("instance", "request_id")}
        return {"status": answer.status_code, **problem}
    message = body["message"]
    return {
        "status": answer.status_code,
        "keys": sorted(body),
        "message": {k: message[k] for k in ("role", "content", "text", "status", "api_key_id")},
    }


@pytest.mark.parametrize("case", sorted(BODIES))
async def test_direct_and_routed_answers_agree(client: httpx.AsyncClient, case: str) -> None:
    owner = await make_user(client)
    client.cookies.clear()  # the key's requests alone (a cookie would name the owner)
    cid = (await make_conversation(client, owner))["conversation_id"]
    client.cookies.clear()
    direct = await client.post(f"/api/messages/{cid}", json=BODIES[case], headers=DIRECT)
    routed = await client.post(f"/api/messages/{cid}", json=BODIES[case], headers=ROUTED)
    assert comparable(direct) == comparable(routed), (direct.text, routed.text)


async def test_unknown_conversation_and_bad_id_agree(client: httpx.AsyncClient) -> None:
    for cid in ("no-such-conversation", "bad id!", "x" * 200):
        body = BODIES["valid"]
        direct = await client.post(f"/api/messages/{cid}", json=body, headers=DIRECT)
        routed = await client.post(f"/api/messages/{cid}", json=body, headers=ROUTED)
        assert comparable(direct) == comparable(routed), (cid, direct.text, routed.text)


async def test_a_valid_external_message_never_reaches_the_route(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct path answers it (what the route does is seen by a spy on its call)."""
    reached: list[str] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        reached.append(args[3])
        return await external_gateway.handle(*args, **kwargs)

    monkeypatch.setattr(messages_route, "external_gateway", types.SimpleNamespace(handle=spy))
    owner = await make_user(client)
    client.cookies.clear()
    cid = (await make_conversation(client, owner))["conversation_id"]
    client.cookies.clear()
    direct = await client.post(f"/api/messages/{cid}", json=BODIES["valid"], headers=DIRECT)
    assert direct.status_code == 201, direct.text
    assert reached == []
    # What it does not take goes on to the route, which answers it the usual way.
    routed = await client.post(f"/api/messages/{cid}", json=BODIES["bad respond"], headers=DIRECT)
    assert routed.status_code == 422
    person = await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=DIRECT)
    assert person.json()["code"] == "unauthenticated"  # the route's hint: add the role
    bearer = await client.post(f"/api/messages/{cid}", json=BODIES["valid"], headers=ROUTED)
    assert bearer.status_code == 201, bearer.text
    # Only the bearer one: the other two failed before the route's body ran.
    assert reached == [cid]
