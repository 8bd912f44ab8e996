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
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    FAKE_REPLY,
    Person,
    Server,
    answers_as_our_fake,
    register,
    serve,
)
from tests.support.live import free_port

ARTIFACTS = Path(os.environ.get("RELAYCHAT_TEST_ARTIFACTS", "test-results")) / "browser"


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.browser)
    # Last in the run: Playwright's sync API keeps its event loop running in this thread
    # until the session ends, and an async test after it could not start its own.
    items.sort(key=lambda item: item.path.parent == here)


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
            while not answers_as_our_fake(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fake LLM did not come up; see {log}")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(15)


@pytest.fixture(scope="session")
def server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    workdir: Path,
) -> Iterator[Server]:
    """One server for the browser tests; each test signs up its own person."""
    yield from serve(workdir / "server", fake_llm_url)


@pytest.fixture
def short_lived_server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server whose access tokens live 3 s, so a test sees them expire."""
    yield from serve(tmp_path_factory.mktemp("short"), fake_llm_url, ACCESS_TOKEN_TTL_SECONDS="3")


@pytest.fixture
def person(server: Server) -> Person:
    """A person with an account on the shared server."""
    return register(server)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
