"""Fixtures: every storage test runs on SQLite + memory and on PostgreSQL + Redis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm
from relaychat.services import Services
from relaychat.settings import Settings
from tests.backends import (
    DATABASE_ENV,
    REDIS_ENV,
    REDIS_PREFIX_ROOT,
    Backend,
    postgres_backend,
    required_url,
    sqlite_backend,
)
from tests.live import serving, write_llm_config

# The key of the original system's documented request, set as EXTERNAL_MESSAGE_API_KEY.
VERBATIM_KEY = "90dbc4ff0c10949ba19c5274226a3dacadb80d606ac9d2244038c62f3d4a1df0"

TEST_JWT_SECRET = "test-secret-that-is-long-enough-0123456789abcdef"
_test_counter = itertools.count()


@pytest.fixture(scope="session")
async def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Backend]:
    async for backend in sqlite_backend(tmp_path_factory.mktemp("sqlite")):
        yield backend


@pytest.fixture(scope="session")
async def postgres_db() -> AsyncIterator[Backend]:
    database_url = required_url(DATABASE_ENV)
    redis_url = required_url(REDIS_ENV)
    async for backend in postgres_backend(database_url, redis_url):
        yield backend


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test (tables are emptied after each test by `clean_backend`)."""
    chosen: Backend = request.getfixturevalue(f"{request.param}_db")
    return chosen


@pytest.fixture
async def clean_backend(backend: Backend) -> AsyncIterator[Backend]:
    """The backend, emptied after the test."""
    try:
        yield backend
    finally:
        await backend.truncate()


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


@pytest.fixture(scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """One fake OpenAI/Anthropic upstream for the run; tests steer it with `!fake` lines."""
    async with running_fake_llm() as fake:
        yield fake


def llm_settings(
    backend: Backend, data_dir: Path, fake_llm: FakeLLM, **overrides: object
) -> Settings:
    """Settings on the backend with endpoints served by the fake upstream."""
    config = write_llm_config(data_dir / "relaychat.yaml", fake_llm)
    return make_settings(backend, data_dir, config_path=config, **overrides)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return llm_settings(backend, tmp_path, fake_llm)


@pytest.fixture
async def services(clean_backend: Backend, settings: Settings) -> AsyncIterator[Services]:
    built = Services.build(settings, engine=clean_backend.engine)
    await built.start()
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def live_url(services: Services) -> AsyncIterator[str]:
    """The app served over a real loopback socket in this event loop (for streaming)."""
    async with serving(create_app(services=services)) as url:
        yield url


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (https, so Secure cookies flow)."""
    app = create_app(services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        yield http
