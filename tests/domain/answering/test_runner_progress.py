"""The periodic save of a streaming reply: what counts as saved is exactly what was written."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import TableClause, Update
from sqlalchemy.ext.asyncio import async_sessionmaker

from relaychat.domain.answering.agent_loop import Job
from relaychat.domain.answering.generations import add_generation
from relaychat.domain.answering.runner import GenerationRunner
from relaychat.llm.types import ChatMessage, ChatRequest, TextPart
from relaychat.services import Services
from relaychat.storage.db import Session
from relaychat.storage.models import Conversation, Message
from tests.support.factories import make_conversation, make_user, post_message
from tests.support.gated_llm import GatedProvider


async def streaming_job(client: httpx.AsyncClient, services: Services) -> Job:
    """A reply row in `streaming` with its running generation, and the job that runs it."""
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    asked = await post_message(client, user, cid, text="hello")
    async with services.sessionmaker() as session:
        conversation = await session.get(Conversation, cid)
        assert conversation is not None
        started = await add_generation(
            session,
            conversation,
            parent_id=asked["message_id"],
            endpoint="gated",
            model="m",
            worker_id="test-worker",
        )
        await session.commit()
    return Job(
        generation_id=started.generation_id,
        user_id=user.id,
        conversation_id=cid,
        message_id=started.response_id,
        endpoint="gated",
        request=ChatRequest(
            model="m", messages=[ChatMessage(role="user", content=[TextPart(text="hello")])]
        ),
        wants_title=False,
    )


async def stored_text(services: Services, message_id: str) -> str:
    async with services.sessionmaker() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        return message.text


async def test_text_arriving_during_the_save_is_written_by_the_next_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    job = await streaming_job(client, services)

    class TextArrivesDuringTheWrite(Session):
        """Text streams in while the UPDATE that saves the reply is under way."""

        async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            if (
                isinstance(statement, Update)
                and isinstance(statement.table, TableClause)
                and statement.table.name == "messages"
            ):
                job.add_text(" and more")
            return await super().execute(statement, *args, **kwargs)

    provider = GatedProvider()
    runner = GenerationRunner(
        sessionmaker=async_sessionmaker(
            services.engine, class_=TextArrivesDuringTheWrite, expire_on_commit=False
        ),
        bus=services.bus,
        providers=provider,
        worker_id="test-worker",
    )
    runner.launch(job)
    try:
        job.add_text("first words")
        await runner.save_progress()
        assert await stored_text(services, job.message_id) == "first words"
        # What arrived during that write was not written, so it is still to be saved.
        assert job.dirty()
        await runner.save_progress()
        assert await stored_text(services, job.message_id) == "first words and more"
    finally:
        provider.release.set()
        await runner.close()
