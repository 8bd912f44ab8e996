"""The Channels page: Twilio numbers connected, changed and deleted in the browser, and
Twilio simulated from the test with requests signed by the channel's auth token."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
from playwright.sync_api import Page, expect

from tests.browser.harness import Server, register
from tests.browser.ui import sign_in
from tests.support.twilio import ACCOUNT_SID, AUTH_TOKEN, fixture_form, sign


def post_twilio(url: str, pairs: list[tuple[str, str]]) -> httpx.Response:
    """POST a form to relaychat as Twilio does: signed with the channel's auth token."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(url, pairs),
    }
    return httpx.post(url, content=urlencode(pairs), headers=headers, timeout=30)


def open_channels(page: Page) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Channels").click()
    expect(page.get_by_role("heading", name="Channels", level=1)).to_be_visible()


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
