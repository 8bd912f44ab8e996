"""external.accept_joining: a lost race to create the conversation is tried once more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from relaychat.domain.accounts.users import UserRaced
from relaychat.domain.intake import external
from relaychat.errors import ConversationExists

ACCEPTED = cast(external.Accepted, object())


@pytest.fixture
async def sessionmaker() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine("sqlite+aiosqlite://")
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def attempts(*errors: Exception) -> tuple[list[AsyncSession], external.AcceptAttempt]:
    """An attempt raising `errors` in turn, then accepting; and the sessions it was given."""
    sessions: list[AsyncSession] = []

    async def attempt(session: AsyncSession) -> external.Accepted:
        sessions.append(session)
        if len(sessions) <= len(errors):
            raise errors[len(sessions) - 1]
        return ACCEPTED

    return sessions, attempt


async def test_the_first_attempt_accepts(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    sessions, attempt = attempts()
    assert await external.accept_joining(sessionmaker, attempt) is ACCEPTED
    assert len(sessions) == 1


async def test_a_conversation_made_meanwhile_is_joined_in_a_fresh_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sessions, attempt = attempts(ConversationExists())
    assert await external.accept_joining(sessionmaker, attempt) is ACCEPTED
    assert len(sessions) == 2 and sessions[0] is not sessions[1]


async def test_a_second_loss_is_raised(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    second = ConversationExists("again")
    sessions, attempt = attempts(ConversationExists(), second)
    with pytest.raises(ConversationExists) as raised:
        await external.accept_joining(sessionmaker, attempt)
    assert raised.value is second and len(sessions) == 2


async def test_other_errors_are_retried_only_when_named(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sessions, attempt = attempts(UserRaced())
    with pytest.raises(UserRaced):
        await external.accept_joining(sessionmaker, attempt)
    assert len(sessions) == 1

    sessions, attempt = attempts(UserRaced())
    assert await external.accept_joining(sessionmaker, attempt, retry_on=(UserRaced,)) is (ACCEPTED)
    assert len(sessions) == 2
