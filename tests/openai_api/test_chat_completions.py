"""POST /v1/chat/completions through the official SDK, over real HTTP, against the fake
upstream: every call a conversation of the caller's owner, streamed or whole."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import openai as openai_errors
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.devtools.fake_config import DEFAULT_REPLY
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.domain.answering.agent_loop import Job
from relaychat.domain.answering.runner import GenerationRunner
from relaychat.domain.messaging import conversations
from relaychat.domain.messaging.titles import MAX_TITLE_CHARS
from relaychat.domain.openai_compat import calls
from relaychat.realtime.bus import Envelope, Subscription
from relaychat.services import Services
from relaychat.storage.db import Session
from relaychat.storage.models import Generation, ReplyUsage
from tests.support.chat import messages_of
from tests.support.factories import TestUser, make_key, make_user
from tests.support.openai_sdk import replies_asked, sdk


async def conversations_of(client: httpx.AsyncClient, user: TestUser) -> list[dict[str, object]]:
    response = await client.get("/api/convos", headers=user.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["conversations"]
    return found


def drain(subscription: Subscription) -> list[Envelope]:
    """The events the subscription holds now."""
    held = []
    while (envelope := subscription.pop()) is not None:
        held.append(envelope)
    return held


def sent_with(fake: FakeLLM, marker: str) -> dict[str, object]:
    """The body of the upstream request whose messages mention `marker`."""
    bodies = replies_asked(fake, marker)
    assert bodies, f"no upstream request mentions {marker}"
    body: dict[str, object] = bodies[-1]
    return body


async def streamed_and_seen(
    openai: AsyncOpenAI, tab: Subscription, content: str
) -> tuple[str, list[Envelope]]:
    """A streamed call's text, and the owner's events up to its reply's completion."""
    stream = await openai.chat.completions.create(
        model="fake/fake-model", messages=[{"role": "user", "content": content}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    events = []
    async for envelope in tab:
        events.append(envelope)
        if envelope.type == "message.completed":
            break
    return text, events


async def test_a_completion_is_a_conversation_of_the_keys_owner(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = f"hello {uuid.uuid4()}"
    async with sdk(live_url, key.secret) as openai:
        raw = await openai.chat.completions.with_raw_response.create(
            model="fake/fake-model",
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": marker},
            ],
            temperature=0.5,
            max_completion_tokens=50,
            stop=["END"],
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake/fake-model"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    upstream = sent_with(fake_llm, marker)
    assert upstream["temperature"] == 0.5
    assert upstream["max_tokens"] == 50
    assert upstream["stop"] == ["END"]
    assert upstream["messages"][0] == {"role": "system", "content": "Answer briefly."}  # type: ignore[index]

    cid = raw.headers["x-relaychat-conversation-id"]
    assert [c["conversation_id"] for c in await conversations_of(client, owner)] == [cid]
    asked, answered = await messages_of(client, owner, cid)
    assert (asked["role"], asked["text"], asked["api_key_id"]) == ("user", marker, key.id)
    assert asked["metadata"] == {"via": "openai-api"}
    assert (answered["role"], answered["text"]) == ("assistant", DEFAULT_REPLY)
    assert answered["parent_message_id"] == asked["message_id"]


async def test_a_new_conversation_brought_with_its_history_is_stored_as_one_chain(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    """A call that opens a conversation with earlier turns of its own stores them in order,
    each the parent of the next, the reply last."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = f"third {uuid.uuid4()}"
    async with sdk(live_url, key.secret) as openai:
        raw = await openai.chat.completions.with_raw_response.create(
            model="fake/fake-model",
            messages=[
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "second"},
                {"role": "user", "content": marker},
            ],
        )
    cid = raw.headers["x-relaychat-conversation-id"]
    stored = await messages_of(client, owner, cid)
    assert [(m["role"], m["text"]) for m in stored] == [
        ("user", "first"),
        ("assistant", "second"),
        ("user", marker),
        ("assistant", DEFAULT_REPLY),
    ]
    assert [m["parent_message_id"] for m in stored] == [
        None,
        *(m["message_id"] for m in stored[:-1]),
    ]
    assert [m["created_at"] for m in stored] == sorted({str(m["created_at"]) for m in stored})
    upstream = sent_with(fake_llm, marker)
    assert [m["role"] for m in upstream["messages"]] == ["user", "assistant", "user"]  # type: ignore[attr-defined]


async def test_a_new_conversation_is_titled_with_its_first_words_not_by_the_model(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    """A call costs the caller only the model call it made: its conversation's title is
    its first message's words (cut short), and no title is asked of the upstream."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = f"m{uuid.uuid4().hex}"
    words = f"Please   summarise\nthe {marker} " + "report " * 20
    async with sdk(live_url, key.secret) as openai:
        await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": words},
            ],
        )
    [conversation] = await conversations_of(client, owner)
    title = str(conversation["title"])
    assert title.startswith(f"Please summarise the {marker} report report")
    assert title.endswith("report…") and len(title) <= MAX_TITLE_CHARS
    # A title asked of the model would mention the first message too.
    assert len([r for r in fake_llm.requests if marker in str(r.body)]) == 1


async def test_a_streamed_completion_ends_with_usage_and_done(
    client: httpx.AsyncClient, live_url: str
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    async with sdk(live_url, key.secret) as openai:
        stream = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    [conversation] = await conversations_of(client, owner)
    assert [
        m["text"] for m in await messages_of(client, owner, str(conversation["conversation_id"]))
    ] == [
        "stream please",
        DEFAULT_REPLY,
    ]


async def test_a_new_conversations_reply_streams_before_its_rows_are_written(
    client: httpx.AsyncClient,
    live_url: str,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call that opens a conversation has its reply started without waiting for the
    database: its first text reaches the caller while the turn's rows are held back, and
    nothing of it reaches the owner's tabs until they are committed; then all is stored."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    held = asyncio.Event()
    stage = conversations.stage_conversation

    async def holding(*args: Any, **kwargs: Any) -> Any:
        await held.wait()
        return await stage(*args, **kwargs)

    monkeypatch.setattr(calls, "stage_conversation", holding)
    async with (
        services.bus.subscribe(owner.id) as tab,
        sdk(live_url, key.secret) as openai,
    ):
        text = ""
        async with asyncio.timeout(5):
            stream = await openai.chat.completions.create(
                model="fake/fake-model",
                messages=[{"role": "user", "content": "first token first"}],
                stream=True,
            )
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
                if text:
                    break
        assert text and DEFAULT_REPLY.startswith(text)
        assert drain(tab) == [] and await conversations_of(client, owner) == []
        held.set()
        async with asyncio.timeout(5):
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        seen = [envelope.type for envelope in drain(tab)]
    assert text == DEFAULT_REPLY
    assert seen[:3] == ["conversation.created", "message.created", "message.created"]
    assert seen[-1] == "message.completed"
    [conversation] = await conversations_of(client, owner)
    assert [
        m["text"] for m in await messages_of(client, owner, str(conversation["conversation_id"]))
    ] == ["first token first", DEFAULT_REPLY]


async def test_a_reply_that_ends_before_its_rows_are_written_is_written_with_them(
    client: httpx.AsyncClient,
    live_url: str,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new conversation's reply that ends while its rows are held back is written in the
    transaction that writes them (no second one for its end): complete, with its token
    counts, and the owner's tabs get it whole."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    monkeypatch.setattr(calls, "HOLD_WRITES", 30.0)  # only the end asks for the rows
    ends: list[str] = []
    end_completed = GenerationRunner._end_completed

    async def ending(runner: GenerationRunner, job: Job, finish: Any) -> None:
        ends.append(job.message_id)
        await end_completed(runner, job, finish)

    monkeypatch.setattr(GenerationRunner, "_end_completed", ending)
    async with services.bus.subscribe(owner.id) as tab, sdk(live_url, key.secret) as openai:
        async with asyncio.timeout(5):
            text, events = await streamed_and_seen(openai, tab, "short and whole")
    assert text == DEFAULT_REPLY
    assert ends == []
    assert [e.type for e in events] == [
        "conversation.created",
        "message.created",
        "message.created",
        "generation.started",
        "message.completed",
    ]
    [conversation] = await conversations_of(client, owner)
    asked, answered = await messages_of(client, owner, str(conversation["conversation_id"]))
    assert (answered["text"], answered["status"]) == (DEFAULT_REPLY, "complete")
    assert answered["parent_message_id"] == asked["message_id"]
    assert answered["completion_tokens"]
    async with services.sessionmaker() as session:
        generation = await session.scalar(
            select(Generation).where(Generation.response_message_id == answered["message_id"])
        )
        usage = await session.get(ReplyUsage, answered["message_id"])
    assert generation is not None and generation.status == "completed"
    assert generation.finish_reason == "stop"
    assert generation.request_message_id == asked["message_id"]
    # The run's own times, though its row was written after it ended.
    assert generation.first_token_at is not None and generation.finished_at is not None
    assert generation.started_at <= generation.first_token_at <= generation.finished_at
    assert usage is not None and usage.api_key_id == key.id
    assert usage.completion_tokens == answered["completion_tokens"]


async def test_a_longer_reply_is_shown_to_the_owners_tabs_as_it_streams(
    client: httpx.AsyncClient,
    live_url: str,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply still running when the held writes' time is up streams to the owner's tabs
    from then on: its rows first, then its text as deltas (what came before in one), then
    its end."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    monkeypatch.setattr(calls, "HOLD_WRITES", 0.05)
    reply = " ".join(f"w{i}" for i in range(12))
    directive = "!fake " + json.dumps({"reply": reply, "token_delay_ms": 40})
    async with services.bus.subscribe(owner.id) as tab, sdk(live_url, key.secret) as openai:
        async with asyncio.timeout(10):
            text, events = await streamed_and_seen(openai, tab, f"{directive}\nhello")
    assert text == reply
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "conversation.created",
        "message.created",
        "message.created",
        "generation.started",
    ]
    assert kinds[-1] == "message.completed" and kinds.count("message.delta") > 1
    deltas = [
        json.loads(e.frame.partition(b"data: ")[2])["delta"]
        for e in events
        if e.type == "message.delta"
    ]
    assert "".join(deltas) == reply


async def test_streamed_text_keeps_every_character(
    client: httpx.AsyncClient, live_url: str
) -> None:
    """Text chunks are filled into a template: quotes, backslashes and non-ASCII text come
    out as they went in."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    reply = 'say "hi" \\ back\\slash é 😀 </script> {"x": 1} done'
    directive = "!fake " + json.dumps({"reply": reply})
    async with sdk(live_url, key.secret) as openai:
        stream = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[{"role": "user", "content": f"{directive}\nhello"}],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    assert len({c.id for c in chunks}) == 1


async def test_a_call_may_continue_its_conversation(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    marker = f"second {uuid.uuid4()}"
    async with sdk(live_url, key.secret) as openai:
        first = await openai.chat.completions.with_raw_response.create(
            model="fake/fake-model", messages=[{"role": "user", "content": "first"}]
        )
        cid = first.headers["x-relaychat-conversation-id"]
        reply = first.parse().choices[0].message.content
        # The SDK way: the whole history again; only what follows the last reply is new.
        await openai.chat.completions.create(
            model="fake/fake-model-mini",
            messages=[
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": reply},
                {"role": "user", "content": marker},
            ],
            extra_body={"conversation_id": cid},
        )
    assert [m["text"] for m in await messages_of(client, owner, cid)] == [
        "first",
        DEFAULT_REPLY,
        marker,
        DEFAULT_REPLY,
    ]
    upstream = sent_with(fake_llm, marker)
    assert upstream["model"] == "fake-model-mini"
    assert [m["role"] for m in upstream["messages"]] == ["user", "assistant", "user"]  # type: ignore[attr-defined]
    assert len(await conversations_of(client, owner)) == 1


async def test_a_person_calls_with_an_access_token(
    client: httpx.AsyncClient, live_url: str
) -> None:
    person = await make_user(client)
    async with sdk(live_url, person.access_token) as openai:
        raw = await openai.chat.completions.with_raw_response.create(
            model="fake/fake-model", messages=[{"role": "user", "content": "from me"}]
        )
    cid = raw.headers["x-relaychat-conversation-id"]
    asked, _ = await messages_of(client, person, cid)
    assert asked["api_key_id"] is None and asked["metadata"] == {"via": "openai-api"}


async def test_store_false_stores_nothing_but_the_audit_row(
    client: httpx.AsyncClient, live_url: str, services: Services
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    async with sdk(live_url, key.secret) as openai:
        whole = await openai.chat.completions.create(
            model="fake/fake-model", messages=[{"role": "user", "content": "x"}], store=False
        )
        stream = await openai.chat.completions.create(
            model="fake/fake-model",
            messages=[{"role": "user", "content": "y"}],
            store=False,
            stream=True,
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert whole.choices[0].message.content == streamed == DEFAULT_REPLY
    assert await conversations_of(client, owner) == []
    await services.audit.flush()
    audit = await client.get(f"/api/keys/{key.id}/audit", headers=owner.headers)
    rows = audit.json()["events"]
    assert [(r["path"], r["status"], r["outcome"]) for r in rows] == [
        ("/v1/chat/completions", 200, "accepted")
    ] * 2
    assert all(r["conversation_id"] is None for r in rows)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_a_call_whose_turn_is_not_committed_stores_and_publishes_nothing(
    client: httpx.AsyncClient,
    live_url: str,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    """The reply's upstream call starts before the turn's commit; when that commit fails,
    the caller gets an error (a 500 when whole; streamed, an error event, as the stream may
    have begun), and no row, no event of the reply and no running generation is left."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    announce, commit = GenerationRunner.announce, Session.commit

    def marking(runner: GenerationRunner, session: AsyncSession, job: Job) -> None:
        session.info["fail commit"] = True
        announce(runner, session, job)

    async def failing(session: Session) -> None:
        if session.info.pop("fail commit", False):
            await session.rollback()
            raise RuntimeError("the commit failed")
        await commit(session)

    monkeypatch.setattr(GenerationRunner, "announce", marking)
    monkeypatch.setattr(Session, "commit", failing)
    marker = f"lost {uuid.uuid4()}"
    async with (
        services.bus.subscribe(owner.id) as tab,
        sdk(live_url, key.secret) as openai,
    ):
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": marker}]
        if stream:
            chunks = await openai.chat.completions.create(
                model="fake/fake-model", messages=messages, stream=True
            )
            with pytest.raises(openai_errors.APIError, match="could not be stored"):
                async for _ in chunks:
                    pass
        else:
            with pytest.raises(openai_errors.InternalServerError, match="could not be stored"):
                await openai.chat.completions.create(model="fake/fake-model", messages=messages)
        async with asyncio.timeout(5):
            while services.chat.runner.running():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # what a late delta would take to arrive
        seen = [envelope.type for envelope in drain(tab)]
    assert seen == []
    assert await conversations_of(client, owner) == []
