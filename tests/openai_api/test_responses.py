"""/v1/responses through the SDK: stored responses, `previous_response_id` continuing from
one, GET reading one back, streaming's typed events, `store: false`."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from relaychat.devtools.fake_config import DEFAULT_REPLY
from relaychat.devtools.fake_llm import FakeLLM
from tests.support.chat import messages_of
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import replies_asked, sdk


async def test_a_second_response_sees_the_first_turn(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = str(uuid.uuid4())
    async with sdk(live_url, key.secret) as api:
        first = await api.responses.create(
            model="fake/fake-model", input="first", instructions="Be brief."
        )
        second = await api.responses.create(
            model="fake/fake-model", input=f"second {marker}", previous_response_id=first.id
        )
        fetched = await api.responses.retrieve(second.id)
    assert first.output_text == second.output_text == DEFAULT_REPLY
    assert first.status == "completed" and first.usage is not None
    assert (fetched.id, fetched.output_text, fetched.status) == (
        second.id,
        DEFAULT_REPLY,
        "completed",
    )
    upstream = replies_asked(fake_llm, marker)[-1]
    assert [(m["role"], m["content"]) for m in upstream["messages"]] == [
        ("system", "Be brief."),
        ("user", "first"),
        ("assistant", DEFAULT_REPLY),
        ("user", f"second {marker}"),
    ]
    [conversation] = (await client.get("/api/convos", headers=owner.headers)).json()[
        "conversations"
    ]
    stored = await messages_of(client, owner, conversation["conversation_id"])
    assert [m["text"] for m in stored] == [
        "first",
        DEFAULT_REPLY,
        f"second {marker}",
        DEFAULT_REPLY,
    ]
    assert {m["api_key_id"] for m in stored if m["role"] == "user"} == {key.id}


async def test_a_streamed_response_sends_the_typed_events(
    client: httpx.AsyncClient, live_url: str
) -> None:
    owner = await make_user(client)
    async with sdk(live_url, owner.access_token) as api:
        stream = await api.responses.create(model="fake/fake-model", input="hi", stream=True)
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == DEFAULT_REPLY
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == DEFAULT_REPLY


async def test_store_false_and_unknown_responses(client: httpx.AsyncClient, live_url: str) -> None:
    owner, stranger = await make_user(client), await make_user(client)
    async with sdk(live_url, owner.access_token) as api:
        unstored = await api.responses.create(model="fake/fake-model", input="x", store=False)
        mine = await api.responses.create(model="fake/fake-model", input="y")
    assert unstored.output_text == DEFAULT_REPLY
    assert (
        len((await client.get("/api/convos", headers=owner.headers)).json()["conversations"]) == 1
    )
    async with sdk(live_url, stranger.access_token) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await api.responses.create(
                model="fake/fake-model", input="z", previous_response_id=mine.id
            )
        with pytest.raises(openai.NotFoundError):
            await api.responses.retrieve(unstored.id)
    assert raised.value.code == "response_not_found"
