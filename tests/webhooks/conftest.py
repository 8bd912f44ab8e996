"""Webhook tests deliver to receivers on loopback, so private targets are allowed here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.settings import llm_settings
from tests.support.webhooks import Receiver, running_receiver


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return llm_settings(
        backend, tmp_path, fake_llm, webhook_allow_private_networks=True, outbox_poll_seconds=0.05
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running
