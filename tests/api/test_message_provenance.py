"""Which API key an external message came with is part of the message, for the UI to name."""

from __future__ import annotations

import httpx

from tests.support.factories import make_conversation, make_key, make_user, post_message


async def test_an_external_message_names_its_key(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    key = await make_key(client, user)
    cid = (await make_conversation(client, user))["conversation_id"]
    mine = await post_message(client, user, cid, text="from the person")
    posted = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "from the gateway", "respond": False},
        headers=key.headers,
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["message"]["api_key_id"] == key.id
    listed = (await client.get(f"/api/messages/{cid}", headers=user.headers)).json()["messages"]
    assert [m["api_key_id"] for m in listed] == [None, key.id]
    assert mine["api_key_id"] is None
