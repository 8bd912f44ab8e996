"""Ending sessions where requests race it: what was issued under an older epoch stays
refused even where the revocation could not reach it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from relaychat.domain.accounts import sessions
from relaychat.errors import SessionEnded
from relaychat.services import Services
from relaychat.storage.models import RefreshToken, User
from tests.support.backends import Backend, row_counts
from tests.support.factories import make_user
from tests.support.sessions import refresh, session_of, sign_in


async def test_a_refresh_link_written_alongside_the_sign_out_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    """A refresh running while the sessions end writes its next link after the revocation
    read the family: that link is not revoked, but it carries the old epoch."""
    user = await make_user(client)
    ended, kept = session_of(user), await sign_in(client, user.email, user.password)
    kept_family = services.tokens.verify(kept.access_token).session_id
    async with services.sessionmaker() as session:
        await sessions.end_sessions(session, services.bus, user.id, keep=kept_family)
        await session.commit()
        # What the racing refresh left behind: links of the old epoch, none revoked.
        await session.execute(
            update(RefreshToken).where(RefreshToken.user_id == user.id).values(revoked_at=None)
        )
        await session.commit()
    refused = await refresh(client, ended.refresh_secret)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_token")
    assert refused.json()["detail"] == "the session was ended; sign in again"
    # The session the change spared goes on, its old-epoch link included.
    renewed = await refresh(client, kept.refresh_secret)
    assert renewed.status_code == 200
    claims = services.tokens.verify(renewed.json()["access_token"])
    async with services.sessionmaker() as session:
        row = await session.get(User, user.id)
        assert row is not None
        assert (claims.session_id, claims.epoch) == (kept_family, row.session_epoch)


async def test_a_session_ended_meanwhile_cannot_change_the_password(
    client: httpx.AsyncClient, services: Services, clean_backend: Backend
) -> None:
    """Its token passed the check a moment ago; another session's change ended it since.
    It must not come back as the session the change keeps."""
    user = await make_user(client)
    first = services.tokens.verify(user.access_token)
    other = await sign_in(client, user.email, user.password)
    changed = await client.post(
        "/api/user/password",
        json={"current_password": user.password, "new_password": "the second passphrase"},
        headers=other.headers,
    )
    assert changed.status_code == 204
    before = await row_counts(clean_backend)
    async with services.sessionmaker() as session:
        row = await session.get(User, user.id)
        assert row is not None
        epoch, kept = row.session_epoch, row.kept_session_id
        with pytest.raises(SessionEnded):
            await sessions.change_password(
                session,
                services.bus,
                row,
                first,
                current_password="the second passphrase",
                new_password="a third passphrase",
            )
    assert await row_counts(clean_backend) == before
    async with services.sessionmaker() as session:
        row = await session.get(User, user.id)
        assert row is not None
        assert (row.session_epoch, row.kept_session_id) == (epoch, kept)
    await sign_in(client, user.email, "the second passphrase")
    assert (await client.get("/api/user", headers=other.headers)).status_code == 200
