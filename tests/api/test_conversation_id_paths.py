"""A conversation id in the path follows the one id rule (domain/messaging/conversation_ids),
not a route's own cap: reading an id no conversation can have is 404, creating one through
the gateway is 422 `invalid_conversation_id`; never a generic validation error."""

from __future__ import annotations

import httpx

from tests.support.backends import Backend, row_counts
from tests.support.factories import make_conversation, make_user
from tests.support.settings import VERBATIM_KEY

LONG_IDS = ["a" * 129, "sms-" + "1" * 400]


async def test_an_id_that_cannot_exist_is_not_found_when_read(
    client: httpx.AsyncClient,
) -> None:
    alice = await make_user(client)
    cid = (await make_conversation(client, alice))["conversation_id"]
    message = {"text": "hi", "respond": False}
    answers = set()
    for long_id in LONG_IDS:
        for method, url, body in (
            ("GET", f"/api/convos/{long_id}", None),
            ("PATCH", f"/api/convos/{long_id}", {"title": "x"}),
            ("DELETE", f"/api/convos/{long_id}", None),
            ("GET", f"/api/messages/{long_id}", None),
            ("POST", f"/api/messages/{long_id}", message),
            ("POST", f"/api/messages/{long_id}/m1/regenerate", None),
            ("GET", f"/api/convos/{long_id}/events", None),
        ):
            response = await client.request(method, url, json=body, headers=alice.headers)
            answers.add(
                (
                    method,
                    url.replace(long_id, "<id>"),
                    response.status_code,
                    response.json()["code"],
                )
            )
    assert {(status, code) for *_, status, code in answers} == {(404, "conversation_not_found")}
    assert (await client.get(f"/api/convos/{cid}", headers=alice.headers)).status_code == 200


async def test_the_gateway_refuses_an_over_long_id_by_the_id_rule(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    await make_user(client)
    client.cookies.clear()
    before = await row_counts(clean_backend)
    body = {"role": "external", "content": "hello", "respond": False}
    for long_id in LONG_IDS:
        response = await client.post(
            f"/api/messages/{long_id}", json=body, headers={"x-api-key": VERBATIM_KEY}
        )
        problem = response.json()
        assert (response.status_code, problem["code"], problem["field"]) == (
            422,
            "invalid_conversation_id",
            "conversation_id",
        )
    after = await row_counts(clean_backend)
    assert {t: n for t, n in after.items() if t != "audit_events"} == {
        t: n for t, n in before.items() if t != "audit_events"
    }
