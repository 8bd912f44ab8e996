from __future__ import annotations

import httpx

from tests.factories import make_conversation, make_user, post_message


async def test_register_login_post(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    assert user.role == "admin"
    convo = await make_conversation(client, user, title="hello")
    first = await post_message(client, user, convo["conversation_id"], text="one")
    second = await post_message(client, user, convo["conversation_id"], text="two")
    assert second["parent_message_id"] == first["message_id"]
