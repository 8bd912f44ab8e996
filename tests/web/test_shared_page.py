"""The page of a share link: the UI's headers and stylesheet, no script, not indexed, and
the same for a link that opens nothing."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from relaychat.app import create_app
from relaychat.settings import Settings
from relaychat.web.pages import CONTENT_SECURITY_POLICY
from relaychat.web.shared import ACCESS_LOGGER
from tests.support.factories import make_conversation, make_user, post_message
from tests.support.settings import TEST_JWT_SECRET


@pytest.fixture
async def share_url(client: httpx.AsyncClient) -> str:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Shared"))["conversation_id"]
    await post_message(client, user, cid, text="hello", respond=False)
    made = await client.post(f"/api/convos/{cid}/shares", json={}, headers=user.headers)
    assert made.status_code == 201, made.text
    client.cookies.clear()
    return f"/s/{made.json()['token']}"


def assert_guarded(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-robots-tag"] == "noindex"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert '<meta name="robots" content="noindex">' in page
    assert '<link rel="stylesheet" href="/static/app.css">' in page
    # No script at all, inline or not, no inline style, no event handler attribute.
    assert "<script" not in page
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page)


async def test_a_shared_page_has_the_uis_headers_and_no_script(
    client: httpx.AsyncClient, share_url: str
) -> None:
    response = await client.get(share_url)
    assert response.status_code == 200
    assert_guarded(response)
    assert "hello" in response.text


@pytest.mark.parametrize("token", ["nothing-here", "A" * 43, "a" * 200])
async def test_a_link_that_opens_nothing_is_a_guarded_404(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.get(f"/s/{token}")
    assert response.status_code == 404
    assert_guarded(response)
    assert "This link is not available" in response.text


def test_the_access_log_never_holds_a_link(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn logs each request's path: a share link's token is masked in it."""
    create_app(Settings(jwt_secret=TEST_JWT_SECRET))
    token = "khtyzAx4PbYO54_XU9dXlG-bEQo4YNjEzreEwjn44Hg"
    access = logging.getLogger(ACCESS_LOGGER)
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/s/{token}", "1.1", 200)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/s/x?a=1", "1.1", 404)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/static/s/a", "1.1", 404)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        '127.0.0.1:5 - "GET /s/… HTTP/1.1" 200',
        '127.0.0.1:5 - "GET /s/…?a=1 HTTP/1.1" 404',
        '127.0.0.1:5 - "GET /static/s/a HTTP/1.1" 404',
    ]
