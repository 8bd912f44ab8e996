"""Events queued on a session go out once it commits, in order and once; never without it."""

from __future__ import annotations

import asyncio
from typing import cast

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.publishing import publish_after_commit
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import BaseEvent, ConversationDeleted
from relaychat.services import Services
from relaychat.storage.db import after_commit
from relaychat.storage.models import Conversation
from tests.support.factories import make_conversation, make_key, make_user

GUARD = 10.0  # only turns a hang into a failure


class Recorder:
    """The part of an EventBus that publishing uses, remembering what it was given."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str | None]] = []
        self.calls: list[int] = []  # how many events each publish_many had

    async def publish(self, user_id: str, event: BaseEvent) -> str:
        self.published.append((user_id, event.conversation_id))
        return f"0-{len(self.published)}"

    async def publish_many(self, events: list[tuple[str, BaseEvent]]) -> list[str]:
        self.calls.append(len(events))
        return [await self.publish(user_id, event) for user_id, event in events]


def deleted(conversation_id: str) -> ConversationDeleted:
    return ConversationDeleted(conversation_id=conversation_id)


async def test_published_in_order_once_when_the_commit_returns(services: Services) -> None:
    recorder = Recorder()
    bus = cast(EventBus, recorder)
    async with services.sessionmaker() as session:
        first = publish_after_commit(session, bus, "u1", deleted("a"))
        publish_after_commit(session, bus, "u2", lambda: deleted("b"))
        await session.execute(select(Conversation.id))
        assert recorder.published == []  # nothing before the commit
        await session.commit()
        assert recorder.published == [("u1", "a"), ("u2", "b")]
        assert first.id == "0-1"
        await session.commit()  # a later commit publishes nothing again
    assert recorder.published == [("u1", "a"), ("u2", "b")]


async def test_events_queued_one_after_another_go_out_together(services: Services) -> None:
    # On Redis each publish is a round trip; a commit's run of events needs only one.
    recorder = Recorder()
    bus = cast(EventBus, recorder)
    seen: list[list[tuple[str, str | None]]] = []

    async def between() -> None:  # another callback: what was queued before it is out
        seen.append(list(recorder.published))

    async with services.sessionmaker() as session:
        queued = [publish_after_commit(session, bus, "u1", deleted(c)) for c in "abc"]
        after_commit(session, between)
        queued.append(publish_after_commit(session, bus, "u1", lambda: deleted("d")))
        await session.execute(select(Conversation.id))
        await session.commit()
    assert recorder.calls == [3, 1]
    assert seen == [[("u1", "a"), ("u1", "b"), ("u1", "c")]]
    assert recorder.published == [("u1", c) for c in "abcd"]
    assert [q.id for q in queued] == ["0-1", "0-2", "0-3", "0-4"]


@pytest.mark.parametrize("how", ["rollback", "close", "failed commit", "begin block raises"])
async def test_nothing_is_published_for_a_transaction_that_did_not_commit(
    client: httpx.AsyncClient, services: Services, how: str
) -> None:
    recorder = Recorder()
    bus = cast(EventBus, recorder)
    async with services.sessionmaker() as session:
        user = (await make_user(client)).id
        if how == "rollback":
            publish_after_commit(session, bus, user, deleted("gone"))
            await session.rollback()
        elif how == "close":
            publish_after_commit(session, bus, user, deleted("gone"))
            await session.close()
        elif how == "failed commit":
            # Two rows with one primary key: the database refuses the commit.
            session.add(Conversation(id="dup", user_id=user))
            await session.flush()
            session.expunge_all()
            session.add(Conversation(id="dup", user_id=user))
            publish_after_commit(session, bus, user, deleted("gone"))
            with pytest.raises(IntegrityError):
                await session.commit()
            await session.rollback()
        else:
            with pytest.raises(RuntimeError):
                async with session.begin():
                    publish_after_commit(session, bus, user, deleted("gone"))
                    raise RuntimeError("changed my mind")
        # The same session commits something else: what was dropped stays dropped.
        publish_after_commit(session, bus, user, deleted("kept"))
        await session.commit()
    assert recorder.published == [(user, "kept")]


async def test_a_begin_block_publishes_when_the_session_closes(services: Services) -> None:
    recorder = Recorder()
    async with services.sessionmaker() as session:
        async with session.begin():
            publish_after_commit(session, cast(EventBus, recorder), "u1", deleted("a"))
        assert recorder.published == []
    assert recorder.published == [("u1", "a")]


async def test_a_session_that_cannot_publish_refuses(services: Services) -> None:
    async with AsyncSession(services.engine) as session:
        with pytest.raises(TypeError):
            publish_after_commit(session, services.bus, "u1", deleted("a"))


async def test_a_conversation_staged_with_a_refused_message_is_never_announced(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The external pipeline queues conversation.created when it stages the conversation;
    the message is refused afterwards, so neither was committed nor announced."""
    user = await make_user(client)
    key = await make_key(client, user, can_create_conversations=True, respond_default=False)
    async with services.bus.subscribe(user.id) as events:
        refused = await client.post(
            "/api/messages/never-made",
            json={"role": "external", "content": "   "},
            headers=key.headers,
        )
        assert refused.status_code == 422, refused.text
        # Something that did happen: the stream's next event must be about it.
        other = (await make_conversation(client, user))["conversation_id"]
        envelope = await asyncio.wait_for(anext(events), GUARD)
    assert (envelope.type, envelope.conversation_id) == ("conversation.created", other)
    missing = await client.get("/api/convos/never-made", headers=user.headers)
    assert missing.status_code == 404
