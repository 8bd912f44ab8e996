"""Webhook tests deliver to receivers on loopback, so private targets are allowed here."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.settings import webhook_settings


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return webhook_settings(backend, tmp_path, fake_llm)
