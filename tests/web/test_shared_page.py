"""The page of a share link: the UI's headers and stylesheet, no script, not indexed, and
the same for a link that opens nothing."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from relaychat.web.pages import CONTENT_SECURITY_POLICY
from tests.support.factories import make_conversation, make_user, post_message


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


async def test_the_access_log_never_holds_a_link(
    client: httpx.AsyncClient, share_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The access line names the route's template (http/request_ids.py), never the path: a
    share link's token stays out of the log, opened or not."""
    with caplog.at_level(logging.INFO, logger="relaychat.access"):
        opened = await client.get(share_url)
        missing = await client.get("/s/khtyzAx4PbYO54_XU9dXlG-bEQo4YNjEzreEwjn44Hg?a=1")
    assert (opened.status_code, missing.status_code) == (200, 404)
    lines = [r.getMessage() for r in caplog.records if r.name == "relaychat.access"]
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        "GET /s/{token} 200",
        "GET /s/{token} 404",
    ]
    assert not [line for line in lines if share_url[3:] in line or "khtyz" in line]
