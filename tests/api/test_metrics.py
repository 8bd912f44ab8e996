"""GET /metrics: open without METRICS_TOKEN; with it, only for the bearer of that token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from relaychat.devtools.fake_llm import FakeLLM
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.settings import llm_settings

TOKEN = "scraper-token-0123456789abcdef0123456789"


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return llm_settings(backend, tmp_path, fake_llm, metrics_token=TOKEN)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "a prefix", "longer", "not bearer", "empty"],
)
async def test_without_the_token_it_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert TOKEN not in response.text


async def test_with_the_token_it_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "relaychat_open_event_streams" in response.text


def test_a_weak_token_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="METRICS_TOKEN"):
        Settings(metrics_token="changeme", data_dir=tmp_path)
