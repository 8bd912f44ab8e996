"""Settings of an in-process app on a test backend."""

from __future__ import annotations

import itertools
from pathlib import Path

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.settings import Settings
from tests.support.backends import REDIS_PREFIX_ROOT, Backend
from tests.support.live import write_llm_config

# The key of the original system's documented request, set as EXTERNAL_MESSAGE_API_KEY.
VERBATIM_KEY = "90dbc4ff0c10949ba19c5274226a3dacadb80d606ac9d2244038c62f3d4a1df0"

TEST_JWT_SECRET = "test-secret-that-is-long-enough-0123456789abcdef"
_test_counter = itertools.count()


def make_settings(backend: Backend, data_dir: Path, **overrides: object) -> Settings:
    """Settings pointing at the backend, with a Redis prefix unique to this test."""
    values: dict[str, object] = {
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_key_prefix": f"{REDIS_PREFIX_ROOT}{next(_test_counter)}:",
        "jwt_secret": TEST_JWT_SECRET,
        "external_message_api_key": VERBATIM_KEY,
        "data_dir": data_dir,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def llm_settings(
    backend: Backend, data_dir: Path, fake_llm: FakeLLM, **overrides: object
) -> Settings:
    """Settings on the backend with endpoints served by the fake upstream."""
    config = write_llm_config(data_dir / "relaychat.yaml", fake_llm)
    return make_settings(backend, data_dir, config_path=config, **overrides)


def twilio_settings(backend: Backend, data_dir: Path, fake_llm: FakeLLM) -> Settings:
    """Settings of the Twilio tests: replies retried a moment apart instead of the
    production schedule's seconds and hours."""
    return llm_settings(
        backend,
        data_dir,
        fake_llm,
        outbox_poll_seconds=0.05,
        webhook_retry_schedule=[0, 0.05, 0.05, 0.05],
    )


def webhook_settings(backend: Backend, data_dir: Path, fake_llm: FakeLLM) -> Settings:
    """Settings of the webhook tests: they deliver to receivers on loopback, so private
    targets are allowed, and the outbox is polled often."""
    return llm_settings(
        backend, data_dir, fake_llm, webhook_allow_private_networks=True, outbox_poll_seconds=0.05
    )
