"""Idempotency-Key handling: the first answer is kept for a day and replayed to repeats."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.ids import new_id
from relaychat.errors import Conflict, ErrorCode, Unprocessable
from relaychat.statuses import IdempotencyState
from relaychat.storage.models import IdempotencyRecord
from relaychat.storage.types import utcnow

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(Unprocessable):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInvalid(Unprocessable):
    code = ErrorCode.IDEMPOTENCY_KEY_INVALID
    title = "Idempotency-Key must be 1 to 255 visible characters"


class IdempotencyInFlight(Conflict):
    code = ErrorCode.IDEMPOTENCY_IN_FLIGHT
    title = "The first request with this Idempotency-Key is still being processed"


@dataclass(frozen=True)
class Replay:
    """The stored answer of an earlier request with the same key and body."""

    status_code: int
    body: dict[str, Any]


def check_key(key: str) -> None:
    """Refuse an empty, blank or over-long Idempotency-Key."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters, not blank",
            field="Idempotency-Key",
        )


def _same_key(key_ref: str, key: str) -> tuple[Any, ...]:
    """The conditions that pick the record of `key` sent with the API key `key_ref`."""
    return IdempotencyRecord.key_ref == key_ref, IdempotencyRecord.idempotency_key == key


def request_fingerprint(path: str, body: Any) -> str:
    """A digest of what the request asks for; key order and spacing don't matter."""
    canonical = json.dumps([path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def begin(
    sessionmaker: async_sessionmaker[AsyncSession], key_ref: str, key: str, fingerprint: str
) -> Replay | None:
    """Claim `key` for this request; a Replay if it already finished, errors otherwise."""
    for _ in range(2):
        async with sessionmaker() as session:
            session.add(
                IdempotencyRecord(
                    id=new_id(),
                    key_ref=key_ref,
                    idempotency_key=key,
                    request_hash=fingerprint,
                    state=IdempotencyState.IN_FLIGHT,
                    expires_at=utcnow() + TTL,
                )
            )
            try:
                await session.commit()
                return None
            except IntegrityError:
                await session.rollback()
            existing = await session.scalar(
                select(IdempotencyRecord).where(*_same_key(key_ref, key))
            )
            if existing is None:
                continue  # finished with an error and released meanwhile: claim it again
            if existing.expires_at <= utcnow():
                await session.delete(existing)
                await session.commit()
                continue
            if existing.request_hash != fingerprint:
                raise IdempotencyKeyReused(field="Idempotency-Key")
            if existing.state != IdempotencyState.DONE or existing.response is None:
                raise IdempotencyInFlight(headers={"Retry-After": "1"})
            return Replay(existing.status_code or 200, existing.response)
    raise IdempotencyInFlight(headers={"Retry-After": "1"})


async def finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    key_ref: str,
    key: str,
    status_code: int,
    body: dict[str, Any],
) -> None:
    """Store the answer for replays."""
    async with sessionmaker() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(*_same_key(key_ref, key))
            .values(state=IdempotencyState.DONE, status_code=status_code, response=body)
        )
        await session.commit()


async def release(sessionmaker: async_sessionmaker[AsyncSession], key_ref: str, key: str) -> None:
    """Forget a claim whose request failed, so that the client may retry it."""
    async with sessionmaker() as session:
        await session.execute(
            delete(IdempotencyRecord).where(
                *_same_key(key_ref, key), IdempotencyRecord.state == IdempotencyState.IN_FLIGHT
            )
        )
        await session.commit()
