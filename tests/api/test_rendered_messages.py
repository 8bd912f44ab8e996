"""Messages as safe HTML (`?render=html`): markdown rendered, every kind of markup inert."""

from __future__ import annotations

import asyncio
import json
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.support.factories import TestUser, make_conversation, make_key, make_user, post_message

PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    "![x](https://tracker.example/pixel.png)",
    '```"><svg onload=alert(1)>\ncode\n```',
    "<a href='javascript:alert(1)'>x</a>",
]
ALLOWED_TAGS = {"p", "a", "pre", "code", "span", "em", "strong", "details", "summary", "br"}


class _Elements(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_inert(html: str) -> None:
    """Only markup markdown writes, with no handler, no style and only web links."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS, html
        for name, value in attrs:
            assert name in {"href", "rel", "class"}, html
            if name == "href":
                assert (value or "").startswith(("https://", "http://", "/", "#")), html


async def rendered(client: httpx.AsyncClient, user: TestUser, cid: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/messages/{cid}?render=html", headers=user.headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["messages"]
    return result


async def test_markdown_is_rendered_with_highlighted_code_and_safe_links(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    text = (
        "**bold** [site](https://example.com)\n\n"
        "```python\nprint('<b>')\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |"
    )
    await post_message(client, user, cid, text=text)
    (message,) = await rendered(client, user, cid)
    html = message["html"]
    assert "<strong>bold</strong>" in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">site</a>' in html
    assert '<pre><code class="language-python"><span class="nb">print</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "<table>" in html and "<td>2</td>" in html


async def test_without_render_there_is_no_html(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    posted = await post_message(client, user, cid, text="*plain* JSON")
    listed = (await client.get(f"/api/messages/{cid}", headers=user.headers)).json()["messages"]
    one = await client.get(f"/api/messages/{cid}/{posted['message_id']}", headers=user.headers)
    assert listed[0]["html"] is None
    assert one.status_code == 200
    assert (one.json()["text"], one.json()["html"]) == ("*plain* JSON", None)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_a_persons_markup_is_inert(client: httpx.AsyncClient, payload: str) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    posted = await post_message(client, user, cid, text=payload)
    (message,) = await rendered(client, user, cid)
    assert_inert(message["html"])
    one = await client.get(
        f"/api/messages/{cid}/{posted['message_id']}?render=html", headers=user.headers
    )
    assert one.json()["html"] == message["html"]


async def test_an_external_message_and_a_model_reply_are_inert(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    key = await make_key(client, user)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    payload = "\n\n".join(PAYLOADS)
    external = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": payload,
            "metadata": {"source": "<script>alert(1)</script>"},
            "respond": False,
        },
        headers=key.headers,
    )
    assert external.status_code == 201, external.text
    # The fake model replies with the payloads: a model's text is as untrusted as anyone's.
    reply = await client.post(
        f"/api/messages/{cid}",
        json={"text": '!fake {"reply": ' + json.dumps(payload) + "}\nsay it"},
        headers=user.headers,
    )
    assert reply.status_code == 202, reply.text
    reply_id = reply.json()["response_message_id"]
    message = await _settled(client, user, cid, reply_id)
    assert message["text"] == payload
    for each in await rendered(client, user, cid):
        assert_inert(each["html"])


async def test_another_users_message_is_not_found(client: httpx.AsyncClient) -> None:
    owner, other = await make_user(client), await make_user(client)
    cid = (await make_conversation(client, owner))["conversation_id"]
    mine = (await make_conversation(client, other))["conversation_id"]
    posted = await post_message(client, owner, cid, text="secret")
    for path in (f"{cid}/{posted['message_id']}", f"{mine}/{posted['message_id']}", f"{mine}/nope"):
        response = await client.get(f"/api/messages/{path}?render=html", headers=other.headers)
        assert response.status_code == 404, response.text
    bad = await client.get(f"/api/messages/{cid}?render=pdf", headers=owner.headers)
    assert bad.status_code == 422


async def test_an_explicit_null_parent_starts_a_new_root(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    first = await post_message(client, user, cid, text="first")
    await post_message(client, user, cid, text="second")
    edited = await post_message(client, user, cid, text="first, edited", parent_message_id=None)
    assert edited["parent_message_id"] is None
    assert first["parent_message_id"] is None
    latest = await post_message(client, user, cid, text="after")
    assert latest["parent_message_id"] == edited["message_id"]


async def _settled(
    client: httpx.AsyncClient, user: TestUser, cid: str, message_id: str
) -> dict[str, Any]:
    for _ in range(600):
        response = await client.get(f"/api/messages/{cid}/{message_id}", headers=user.headers)
        message: dict[str, Any] = response.json()
        if message["status"] != "streaming":
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"reply {message_id} never finished")
