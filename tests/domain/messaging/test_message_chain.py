"""Concurrent posts into one conversation form one chain in arrival order, never a fork."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.factories import make_conversation, make_user


def assert_one_chain(messages: list[dict[str, Any]]) -> None:
    """One root, at most one child each, and the chain runs in the listing's (creation) order."""
    roots = [m for m in messages if m["parent_message_id"] is None]
    assert len(roots) == 1, f"{len(roots)} roots"
    children = Counter(m["parent_message_id"] for m in messages if m["parent_message_id"])
    forks = {parent: n for parent, n in children.items() if n > 1}
    assert not forks, f"{len(forks)} messages have several children"
    parents = [m["parent_message_id"] for m in messages]
    assert parents == [None] + [m["message_id"] for m in messages[:-1]]


@pytest.mark.parametrize(("posts", "respond"), [(50, False), (12, True)])
async def test_concurrent_posts_form_one_chain(
    client: httpx.AsyncClient, fake_llm: FakeLLM, posts: int, respond: bool
) -> None:
    user = await make_user(client)
    # With an endpoint every post also creates its reply, which the next post answers.
    fields = {"endpoint": "fake", "title": "busy"} if respond else {}
    cid = (await make_conversation(client, user, **fields))["conversation_id"]

    async def post(n: int) -> httpx.Response:
        return await client.post(
            f"/api/messages/{cid}", json={"text": f"message {n}"}, headers=user.headers
        )

    answers = await asyncio.gather(*(post(n) for n in range(posts)))
    assert {a.status_code for a in answers} == {202 if respond else 201}
    listed = await client.get(f"/api/messages/{cid}", headers=user.headers)
    messages: list[dict[str, Any]] = listed.json()["messages"]
    assert len(messages) == posts * (2 if respond else 1)
    assert_one_chain(messages)
    if respond:
        # Each reply answers the message it was generated for.
        by_id = {m["message_id"]: m for m in messages}
        for answer in answers:
            body = answer.json()
            reply = by_id[body["response_message_id"]]
            assert reply["parent_message_id"] == body["message"]["message_id"]


async def test_an_explicit_parent_still_branches(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    url, auth = f"/api/messages/{cid}", user.headers
    first = (await client.post(url, json={"text": "one"}, headers=auth)).json()["message"]
    await client.post(url, json={"text": "two"}, headers=auth)
    branch = await client.post(
        url, json={"text": "beside two", "parent_message_id": first["message_id"]}, headers=auth
    )
    assert branch.json()["message"]["parent_message_id"] == first["message_id"]
    # The next message without a parent answers the latest one: the branch.
    after = (await client.post(url, json={"text": "next"}, headers=auth)).json()["message"]
    assert after["parent_message_id"] == branch.json()["message"]["message_id"]
