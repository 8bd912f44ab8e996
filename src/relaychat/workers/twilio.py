"""Sends replies through Twilio's Messages API (placeholder; being written)."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.crypto import SecretBox
from relaychat.storage.models import OutboxItem
from relaychat.workers.outbox import Attempt


class TwilioSender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SecretBox,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.secrets = secrets
        self.http = http

    async def send(self, item: OutboxItem) -> Attempt:
        return Attempt(False, error="not written yet", give_up=True)

    async def settle(
        self, session: AsyncSession, item: OutboxItem, attempt: Attempt, now: datetime
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None
