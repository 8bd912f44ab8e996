"""The processes and people of the browser tests: servers, the fake LLM's answer, accounts."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.factories import DEFAULT_PASSWORD
from tests.support.live import free_port

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

    def post_external(
        self,
        conversation_id: str,
        content: str | list[dict[str, str]],
        metadata: dict[str, str] | None = None,
        *,
        respond: bool = False,
    ) -> None:
        """Post as an SMS gateway or bot would: with the system API key, role `external`."""
        body: dict[str, object] = {"role": "external", "content": content, "respond": respond}
        if metadata is not None:
            body["metadata"] = metadata
        with self.api() as http:
            posted = http.post(
                f"/api/messages/{conversation_id}", headers={"x-api-key": SYSTEM_KEY}, json=body
            )
        assert posted.status_code == (202 if respond else 201), posted.text

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


def serve(
    data_dir: Path, fake_url: str, extra_config: str = "", **env_overrides: str
) -> Iterator[Server]:
    """`relaychat serve` on a free port with its own SQLite database, until the test ends;
    `extra_config` is appended to its YAML (e.g. `mcp_servers:`)."""
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
        + extra_config
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


def answers_as_our_fake(url: str) -> bool:
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


_people = itertools.count(1)


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
