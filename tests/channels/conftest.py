"""Twilio channel tests: a fake Twilio API per test, fixtures signed as Twilio signs them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.devtools.fake_twilio import FakeTwilio, running_fake_twilio
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.settings import llm_settings
from tests.support.twilio import ACCOUNT_SID, AUTH_TOKEN


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    # Retries a moment apart instead of the production schedule's seconds and hours.
    return llm_settings(
        backend,
        tmp_path,
        fake_llm,
        outbox_poll_seconds=0.05,
        webhook_retry_schedule=[0, 0.05, 0.05, 0.05],
    )


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with running_fake_twilio(accounts={ACCOUNT_SID: AUTH_TOKEN}) as fake:
        yield fake
