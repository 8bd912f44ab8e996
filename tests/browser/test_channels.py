"""The Channels page: a Twilio number connected in the browser, its webhook URL copied from
the page, and Twilio simulated from the test — a signed inbound SMS, the reply sent to a
fake Twilio API, and a status callback — each seen on the channel's page."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page, expect

from relaychat.devtools.fake_twilio import FakeTwilioState, SentMessage, create_fake_twilio_app
from tests.browser.harness import Person, Server, register
from tests.browser.ui import sign_in
from tests.support.twilio import ACCOUNT_SID, AUTH_TOKEN, fixture_form, sign


@dataclass
class FakeTwilio:
    url: str
    state: FakeTwilioState

    def sent(self, count: int = 1) -> list[SentMessage]:
        """The messages the fake was sent, once there are `count` (bounded wait)."""
        deadline = time.monotonic() + 30
        while len(self.state.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} message(s) never reached the fake Twilio")
            time.sleep(0.05)  # another thread's server: there is no event to await here
        return list(self.state.messages)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """The fake Twilio Messages API on a thread of this process, so the test reads what it
    was sent (with the StatusCallback relaychat gave) as Twilio would know it. It sends no
    callbacks itself: the test does, to watch each one arrive."""
    state = FakeTwilioState(accounts={ACCOUNT_SID: AUTH_TOKEN})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_fake_twilio_app(state), lifespan="off", ws="none", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Twilio did not start")
            time.sleep(0.02)
        yield FakeTwilio(f"http://127.0.0.1:{sock.getsockname()[1]}", state)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


CLI = [sys.executable, "-m", "relaychat"]
SECOND_SID = "SM5a2b3c4d5e6f708192a3b4c5d6e7f809"


def make_admin(server: Server) -> Person:
    """An admin of the shared server (only admins may point replies at the fake Twilio),
    made with the CLI on the server's database as an operator would."""
    who = Person(email=f"admin-{time.monotonic_ns()}@example.com", name="Ada Admin")
    created = subprocess.run(
        [*CLI, "users", "create", "--email", who.email, "--name", who.name, "--admin"],
        input=f"{who.password}\n",
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    return who


def post_twilio(url: str, pairs: list[tuple[str, str]]) -> httpx.Response:
    """POST a form to relaychat as Twilio does: signed with the channel's auth token."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(url, pairs),
    }
    return httpx.post(url, content=urlencode(pairs), headers=headers, timeout=30)


def screenshot(page: Page, path: Path, width: int) -> None:
    """The whole page at `width`: the console scrolls inside the window, so the window is
    made as tall as its content first."""
    page.set_viewport_size({"width": width, "height": 800})
    height = page.evaluate("document.getElementById('console-body').scrollHeight")
    page.set_viewport_size({"width": width, "height": max(800, int(height) + 80)})
    page.screenshot(path=path)


def open_channels(page: Page) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Channels").click()
    expect(page.get_by_role("heading", name="Channels", level=1)).to_be_visible()


def test_connect_a_number_and_follow_an_sms_through_it(
    page: Page, server: Server, fake_twilio: FakeTwilio, artifacts: Path
) -> None:
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    admin = make_admin(server)
    sign_in(page, server, admin)
    open_channels(page)
    expect(page.get_by_text("No channels yet")).to_be_visible()

    form = page.get_by_role("form", name="Connect a Twilio number")
    form.get_by_label("Name").fill("Front desk")
    form.get_by_label("Account SID").fill("AC12345")
    form.get_by_label("Auth token", exact=True).fill(AUTH_TOKEN)
    # The page offers this server's address as the one Twilio reaches.
    expect(form.get_by_label("Public URL")).to_have_value(server.url)
    form.get_by_label("Public URL").fill("ftp://example.com")
    form.get_by_label("Answers with").select_option(label="fake · fake-model")
    form.get_by_label("Twilio API base URL").fill(fake_twilio.url)
    form.get_by_role("button", name="Connect number").click()
    # Each problem next to its own field, and nothing stored.
    sid = form.get_by_label("Account SID")
    expect(sid).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_role("alert").filter(has_text="pattern")).to_be_visible()
    expect(form.get_by_label("Public URL")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_role("alert").filter(has_text="http(s) URL")).to_be_visible()
    expect(page.get_by_text("No channels yet")).to_be_visible()

    sid.fill(ACCOUNT_SID)
    form.get_by_label("Public URL").fill(server.url)
    form.get_by_role("button", name="Connect number").click()
    card = page.get_by_role("article", name="Front desk")
    expect(card).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Front desk is connected")).to_be_visible()
    expect(form.get_by_role("alert")).to_have_count(0)
    expect(form.get_by_label("Auth token", exact=True)).to_have_value("")
    expect(card).to_contain_text("fake · fake-model")
    expect(card).to_contain_text("stored, encrypted")
    expect(card).to_contain_text(f"Replies sent to{fake_twilio.url}")
    expect(card).not_to_contain_text(AUTH_TOKEN)
    card.get_by_role("button", name="Copy URL").click()
    expect(card.get_by_role("button", name="Copied")).to_be_visible()
    webhook_url: str = page.evaluate("navigator.clipboard.readText()")
    pattern = rf"{re.escape(server.url)}/api/channels/twilio/[0-9a-f-]{{36}}"
    assert re.fullmatch(pattern, webhook_url)
    expect(card.get_by_text(webhook_url, exact=True)).to_be_visible()
    expect(card).to_contain_text("A message comes in")
    screenshot(page, artifacts / "channels-1440.png", 1440)
    screenshot(page, artifacts / "channels-375.png", 375)
    page.set_viewport_size({"width": 1440, "height": 1000})

    card.get_by_role("link", name="Messages").click()
    expect(page).to_have_url(re.compile(r"/channels/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Front desk", level=1)).to_be_visible()
    expect(page.get_by_text("No messages yet")).to_be_visible()

    # Twilio: a text to the number, signed with the account's auth token. The open page
    # hears of it from the owner's event stream.
    first = fixture_form("inbound__sms", Body="Hi, is my order ready?")
    answer = post_twilio(webhook_url, first)
    assert answer.status_code == 200, answer.text
    rows = page.get_by_role("table").get_by_role("row")
    inbound_row = rows.filter(has_text="Hi, is my order ready?")
    expect(inbound_row).to_contain_text("+14155552671")
    expect(inbound_row).to_contain_text("received")
    # The fake model's reply goes out to the fake Twilio, and the page shows it queued there.
    replies = rows.filter(has_text="Here is a small helper")
    expect(replies.get_by_text("queued", exact=True)).to_be_visible(timeout=30_000)
    expect(replies).to_contain_text("+14155550100")
    (sent,) = fake_twilio.sent()
    assert sent.to == "+14155552671"
    assert sent.body.startswith("Here is a small helper")
    assert sent.status_callback is not None

    # Twilio's status callback, which no event announces: the page reads it again.
    status = fixture_form("status__delivered", MessageSid=sent.sid, SmsSid=sent.sid)
    reported = post_twilio(sent.status_callback, status)
    assert reported.status_code == 204, reported.text
    expect(replies.get_by_text("delivered", exact=True)).to_be_visible(timeout=15_000)

    # A second text, whose reply the carrier cannot deliver: the state and Twilio's code.
    second = fixture_form(
        "inbound__sms", Body="And the invoice?", MessageSid=SECOND_SID, SmsSid=SECOND_SID
    )
    second = [(k, SECOND_SID if k == "SmsMessageSid" else v) for k, v in second]
    assert post_twilio(webhook_url, second).status_code == 200
    expect(rows.filter(has_text="And the invoice?")).to_be_visible()
    expect(replies).to_have_count(2, timeout=30_000)
    _, resent = fake_twilio.sent(2)
    assert resent.status_callback is not None
    status = fixture_form(
        "status__undelivered", MessageSid=resent.sid, SmsSid=resent.sid, ErrorCode="30003"
    )
    assert post_twilio(resent.status_callback, status).status_code == 204
    newest = replies.first
    expect(newest.get_by_text("undelivered", exact=True)).to_be_visible(timeout=15_000)
    expect(newest).to_contain_text("Twilio error 30003")
    expect(replies.last.get_by_text("delivered", exact=True)).to_be_visible()
    screenshot(page, artifacts / "channels-messages-1440.png", 1440)
    page.emulate_media(color_scheme="dark")
    screenshot(page, artifacts / "channels-messages-1440-dark.png", 1440)
    page.emulate_media(color_scheme="light")
    screenshot(page, artifacts / "channels-messages-375.png", 375)
    page.set_viewport_size({"width": 1440, "height": 1000})

    # The conversation it belongs to opens in the chat.
    inbound_row.get_by_role("link", name="Open the conversation with +14155552671").click()
    expect(page).to_have_url(re.compile(r"/c/sms-%2B14155552671\.[0-9a-f]{12}$"))
    expect(page.get_by_role("log", name="Messages")).to_contain_text("Hi, is my order ready?")


def test_edit_keeps_the_token_and_delete_asks_first(page: Page, server: Server) -> None:
    # Not the server's first account, which is its admin.
    register(server)
    person = register(server)
    sign_in(page, server, person)
    open_channels(page)
    form = page.get_by_role("form", name="Connect a Twilio number")
    # Admin-only settings are not offered to everyone else.
    expect(form.get_by_label("Twilio API base URL")).to_have_count(0)
    expect(form.get_by_label("Owner")).to_have_count(0)
    form.get_by_label("Name").fill("Reception")
    form.get_by_label("Account SID").fill(ACCOUNT_SID)
    form.get_by_role("button", name="Connect number").click()
    expect(form.get_by_label("Auth token", exact=True)).to_have_attribute("aria-invalid", "true")
    form.get_by_label("Auth token", exact=True).fill(AUTH_TOKEN)
    form.get_by_role("button", name="Connect number").click()
    card = page.get_by_role("article", name="Reception")
    expect(card).to_contain_text("Nobody: messages wait for you")
    expect(card).not_to_contain_text("Replies sent to")  # Twilio's own API
    webhook_url = card.get_by_text(re.compile(r"/api/channels/twilio/")).text_content()
    assert webhook_url

    card.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name="Edit Reception")
    expect(edit.get_by_label("Auth token", exact=True)).to_have_value("")
    edit.get_by_label("Name").fill("Reception desk")
    edit.get_by_label("Take messages").uncheck()
    edit.get_by_role("button", name="Save changes").click()
    card = page.get_by_role("article", name="Reception desk")
    expect(card).to_contain_text("paused")
    # Paused: Twilio is refused. Resumed with the token field left empty: the stored token
    # still verifies Twilio's signature.
    inbound = fixture_form("inbound__sms", Body="Are you open today?")
    assert post_twilio(webhook_url, inbound).status_code == 403
    card.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name="Edit Reception desk")
    edit.get_by_label("Take messages").check()
    edit.get_by_role("button", name="Save changes").click()
    expect(card).to_contain_text("taking messages")
    expect(card).to_contain_text("stored, encrypted")
    assert post_twilio(webhook_url, inbound).status_code == 200

    card.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete “Reception desk”")
    dialog.get_by_role("button", name="Cancel").click()
    expect(card).to_be_visible()
    card.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("article", name="Reception desk")).to_have_count(0)
    expect(page.get_by_text("No channels yet")).to_be_visible()
    assert post_twilio(webhook_url, inbound).status_code == 404


def test_messages_page_in_and_new_ones_join_what_is_loaded(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        created = http.post(
            "/api/channels",
            headers=auth,
            json={
                "type": "twilio",
                "name": "Night line",
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "public_url": server.url,
            },
        )
        assert created.status_code == 201, created.text
    channel = created.json()
    # Signed in first: tests.browser.ui.sign_in waits for a "New chat" button, a name the
    # texts' conversations would share.
    sign_in(page, server, person)
    for n in range(27):  # more than a page (25)
        sid = f"SM{n:032x}"
        form = fixture_form("inbound__sms", Body=f"Text {n:02d}", MessageSid=sid, SmsSid=sid)
        assert post_twilio(channel["webhook_url"], form).status_code == 200
    page.goto(f"{server.url}/channels/{channel['id']}")
    body = page.get_by_role("table").get_by_role("rowgroup").last
    rows = body.get_by_role("row")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("Text 26")
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(27)
    expect(rows.last).to_contain_text("Text 00")
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()

    # A new text arrives on top; the older page already loaded stays.
    form = fixture_form("inbound__sms", Body="Text 27", MessageSid=f"SM{27:032x}")
    assert post_twilio(channel["webhook_url"], form).status_code == 200
    expect(rows.first).to_contain_text("Text 27")
    expect(rows).to_have_count(28)
    expect(rows.last).to_contain_text("Text 00")
