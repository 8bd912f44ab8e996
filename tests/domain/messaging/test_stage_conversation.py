"""A new conversation's row: inserted as the database wrote it, a taken id refused."""

from __future__ import annotations

import httpx
import pytest

from relaychat.domain.ids import new_id
from relaychat.domain.messaging.conversations import stage_conversation
from relaychat.errors import ConversationExists
from relaychat.services import Services
from relaychat.storage.models import Conversation
from tests.support.factories import make_user


async def test_a_staged_conversation_is_in_the_session_as_written(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    async with services.sessionmaker() as session:
        staged = await stage_conversation(
            session, user.id, conversation_id=None, fields={"title": "Staged", "model": None}
        )
        # The session's entity is the row: changed and flushed like a loaded one.
        assert await session.get(Conversation, staged.id) is staged
        staged.title = "Renamed"
        await session.commit()
    async with services.sessionmaker() as session:
        stored = await session.get(Conversation, staged.id)
    assert stored is not None
    assert (stored.user_id, stored.title, stored.model) == (user.id, "Renamed", None)
    assert stored.created_at == staged.created_at


async def test_an_id_taken_when_it_is_inserted_is_a_conflict_and_nothing_is_kept(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The lookup before the insert can miss a conversation committed meanwhile (`fresh`
    skips it here, to be that late): the insert refuses the id all the same."""
    owner, other = await make_user(client), await make_user(client)
    cid = new_id()
    async with services.sessionmaker() as session:
        await stage_conversation(session, owner.id, conversation_id=cid, fields={"title": "A"})
        await session.commit()
    async with services.sessionmaker() as session:
        with pytest.raises(ConversationExists):
            await stage_conversation(
                session, other.id, conversation_id=cid, fields={"title": "B"}, fresh=True
            )
        await session.commit()
    async with services.sessionmaker() as session:
        stored = await session.get(Conversation, cid)
    assert stored is not None and (stored.user_id, stored.title) == (owner.id, "A")
