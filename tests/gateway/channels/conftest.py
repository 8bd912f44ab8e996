"""Twilio channel tests: replies retried a moment apart (the fake Twilio API, `fake_twilio`,
and the signed fixtures come from tests/conftest.py and tests.support.twilio)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.settings import twilio_settings


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return twilio_settings(backend, tmp_path, fake_llm)
