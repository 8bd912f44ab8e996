"""Fixtures: every storage test runs on SQLite + memory and on PostgreSQL + Redis; the fake
upstreams (LLM, Twilio) and the webhook receiver, for the tests of any folder that need them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM, running_fake_llm
from relaychat.devtools.fake_twilio import FakeTwilio, running_fake_twilio
from relaychat.domain.accounts import passwords
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import (
    DATABASE_ENV,
    REDIS_ENV,
    Backend,
    postgres_backend,
    required_url,
    sqlite_backend,
)
from tests.support.live import serving
from tests.support.settings import llm_settings
from tests.support.tls import shared_default_contexts
from tests.support.twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.support.webhooks import Receiver, running_receiver


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2id at its lowest cost inside the test process. Production's cost (a fifth of a
    second of CPU per hash or check, on purpose) times the suite's thousands of sign-ups and
    log-ins was minutes of the run, and no test depends on it: a hash still verifies only its
    own password. Server processes the tests start keep production's parameters."""
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", cheap)
        patch.setattr(passwords, "_DUMMY_HASH", cheap.hash("relaychat-timing-equaliser"))
        yield


@pytest.fixture(scope="session", autouse=True)
def shared_tls_contexts() -> Iterator[None]:
    """The default TLS client context loaded once, not four times per app (tests/support/tls.py)."""
    with shared_default_contexts():
        yield


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


@pytest.fixture(scope="session")
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """One fake OpenAI/Anthropic upstream for the run; tests steer it with `!fake` lines."""
    async with running_fake_llm() as fake:
        yield fake


@pytest.fixture(scope="session")
async def fake() -> AsyncIterator[FakeLLM]:
    """The fake LLM upstream the adapter tests share; they tell their requests apart by marker."""
    async with running_fake_llm() as server:
        yield server


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    """A fake Twilio API of its own for each test, knowing the test account."""
    async with running_fake_twilio(accounts={ACCOUNT_SID: AUTH_TOKEN}) as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback that verifies every delivery."""
    async with running_receiver() as running:
        yield running


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
