"""Browser tests: Debian's Chromium driven by Playwright, against real server processes.

No browser is ever downloaded: the system `chromium` (or CHROMIUM_PATH) is used, and
without one these tests skip with a reason — or fail under CI=true, where a skipped
browser test would hide a broken UI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import DEFAULT_PASSWORD
from tests.live import free_port

SYSTEM_KEY = "browser-tests-system-key-0123456789abcdef"
# What the fake model answers unless a message asks otherwise (`!fake {...}`): markdown,
# so the screenshots show what rendering does.
FAKE_REPLY = """Here is a small helper:

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```

| channel | arrives |
|---------|---------|
| browser | live    |
| SMS     | live    |
"""
ARTIFACTS = Path(os.environ.get("RELAYCHAT_TEST_ARTIFACTS", "test-results")) / "browser"


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    path = chromium_path()
    if path is None:
        reason = (
            "no Chromium found (install `chromium` or set CHROMIUM_PATH): browser tests skipped"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true that is a failure")
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": path}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    # Reduced motion: no transition is caught half-way in a screenshot.
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 860},
        "reduced_motion": "reduce",
    }


@dataclass
class Server:
    """A `relaychat serve` process on a fixed port; `stop()` and `start()` it again there."""

    url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> None:
        log = self.data_dir / "server.log"
        command = [sys.executable, "-m", "relaychat", "serve", "--host", "127.0.0.1"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_healthy(self.process, self.url, log)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _serve(data_dir: Path, fake_url: str, **env_overrides: str) -> Iterator[Server]:
    """`relaychat serve` on a free port with its own SQLite database, until the test ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "relaychat.yaml"
    config.write_text(
        f"""
endpoints:
  custom:
    - name: fake
      base_url: {fake_url}/v1
      api_key: fake-key
      models: {{default: [fake-model, fake-model-mini], fetch: false}}
      title_model: fake-model-mini
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.pop("JWT_SECRET", None)
    env.update(
        RELAYCHAT_DATA_DIR=str(data_dir),
        RELAYCHAT_CONFIG=str(config),
        COOKIE_SECURE="false",
        EXTERNAL_MESSAGE_API_KEY=SYSTEM_KEY,
        **env_overrides,
    )
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", port, data_dir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a process coming up: there is no event to await
    raise TimeoutError(f"server did not come up; see {log}")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Data dirs and logs of the processes, kept apart from pytest's numbered temp dirs
    (which another pytest run on the machine may prune while our servers still use them)."""
    path = Path(tempfile.mkdtemp(prefix="relaychat-browser-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_llm_url(workdir: Path) -> Iterator[str]:
    """The fake upstream in its own process; replies stream a word every 40 ms."""
    port = free_port()
    log = workdir / "fake.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relaychat",
                "dev",
                "fake-llm",
                "--port",
                str(port),
                "--token-delay-ms",
                "40",
                "--reply",
                FAKE_REPLY,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _answers_as_our_fake(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake LLM did not come up; see {log}")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(15)


def _answers_as_our_fake(url: str) -> bool:
    """Whether our fake answers there: with many test runs on one machine, another
    process may take the free port first, and answer the health check in our stead."""
    try:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"authorization": "Bearer k"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
    except httpx.TransportError:
        return False
    return response.status_code == 200 and (
        response.json()["choices"][0]["message"]["content"] == FAKE_REPLY
    )


@pytest.fixture(scope="session")
def server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    workdir: Path,
) -> Iterator[Server]:
    """One server for the browser tests; each test signs up its own person."""
    yield from _serve(workdir / "server", fake_llm_url)


@pytest.fixture
def short_lived_server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server whose access tokens live 3 s, so a test sees them expire."""
    yield from _serve(tmp_path_factory.mktemp("short"), fake_llm_url, ACCESS_TOKEN_TTL_SECONDS="3")


_people = iter(range(1, 1_000_000))


@dataclass
class Person:
    email: str
    name: str
    password: str = DEFAULT_PASSWORD


def register(server: Server, name: str = "Ann Example") -> Person:
    """A new account (through the API: the sign-up form has its own test)."""
    who = Person(email=f"p{next(_people)}-{time.monotonic_ns()}@example.com", name=name)
    with server.api() as http:
        response = http.post(
            "/api/auth/register",
            json={"email": who.email, "password": who.password, "name": who.name},
        )
        assert response.status_code == 201, response.text
    return who


@pytest.fixture
def person(server: Server) -> Person:
    """A person with an account on the shared server."""
    return register(server)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
