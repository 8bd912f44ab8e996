"""Share links in the browser: made from a conversation's Share button, copied, opened by
someone signed out as a read-only page, revoked from the same dialog."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, send, sign_in

PHONE = "+14155552671"


def shared_page_screenshots(page: Page, artifacts: Path) -> None:
    for width, scheme, suffix in (
        (1440, "light", "1440"),
        (1440, "dark", "1440-dark"),
        (375, "light", "375"),
    ):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=artifacts / f"shared-page-{suffix}.png", full_page=True)


def test_share_a_conversation_and_read_it_signed_out(
    page: Page, browser: Browser, server: Server, person: Person, artifacts: Path
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.set_viewport_size({"width": 1440, "height": 900})
    sign_in(page, server, person)
    page.get_by_role("button", name="New chat", exact=True).click()
    send(page, "Write a greeting function in Python.")
    expect(messages(page).nth(1).locator("pre")).to_be_visible(timeout=20_000)
    conversation_id = page.url.rsplit("/", 1)[1]
    server.post_external(
        conversation_id,
        "Delivery update: your parcel is at the front desk.",
        {"source": "sms", "phoneNumber": PHONE},
    )
    expect(messages(page).nth(2)).to_contain_text("front desk")
    expect(page.get_by_role("heading", level=1)).not_to_have_text("New chat", timeout=20_000)
    title = "Greeting helper"
    with server.api() as http:  # a person's title: what the shared page is called
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        renamed = http.patch(f"/api/convos/{conversation_id}", headers=auth, json={"title": title})
        assert renamed.status_code == 200, renamed.text
    expect(page.get_by_role("heading", level=1)).to_have_text(title)

    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.get_by_role("button", name=f"Share {title}").click()
    dialog = page.get_by_role("dialog", name=f"Share “{title}”")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Show phone numbers of external senders")).not_to_be_checked()
    expect(dialog.get_by_label("Show API key names")).not_to_be_checked()
    expect(dialog.get_by_text("No links yet.")).to_be_visible()
    dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_label("Share link")
    expect(link).to_have_value(re.compile(re.escape(server.url) + r"/s/[A-Za-z0-9_-]{43}$"))
    url = link.input_value()
    dialog.get_by_role("button", name="Copy link").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == url
    links = dialog.get_by_role("list", name="Links to this conversation").get_by_role("listitem")
    expect(links).to_have_count(1)
    expect(links.first).to_contain_text("3 messages")
    page.screenshot(path=artifacts / "share-dialog-1440.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "share-dialog-1440-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=artifacts / "share-dialog-375.png")
    page.set_viewport_size({"width": 1440, "height": 900})
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Written after sharing: the link never shows it.
    send(page, '!fake {"reply": "a later answer"}\nsomething said after sharing')
    expect(messages(page).nth(4)).to_contain_text("a later answer", timeout=20_000)

    stranger = browser.new_context(reduced_motion="reduce")
    try:
        violations: list[str] = []
        shared = stranger.new_page()
        shared.on("console", lambda m: violations.append(m.text) if m.type == "error" else None)
        opened = shared.goto(url)
        assert opened is not None and opened.status == 200
        assert opened.headers["x-robots-tag"] == "noindex"
        expect(shared.get_by_role("heading", level=1)).to_have_text(title)
        log = shared.get_by_role("log", name="Messages").get_by_role("article")
        expect(log).to_have_count(3)
        expect(log.nth(0)).to_contain_text("Write a greeting function in Python.")
        expect(log.nth(1).locator("pre")).to_contain_text("def greet")
        expect(log.nth(1).get_by_role("table")).to_be_visible()
        expect(log.nth(2)).to_contain_text("front desk")
        expect(log.nth(2)).to_contain_text("external")
        expect(shared.locator("body")).not_to_contain_text(PHONE)
        expect(shared.locator("body")).not_to_contain_text("after sharing")
        # Read-only, and signed out: nothing to type in, nothing to press, no session.
        expect(shared.get_by_role("textbox")).to_have_count(0)
        expect(shared.get_by_role("button")).to_have_count(0)
        assert stranger.cookies() == []
        shared_page_screenshots(shared, artifacts)
        assert violations == []

        page.get_by_role("button", name=f"Share {title}").click()
        expect(links).to_have_count(1)
        links.first.get_by_role("button", name=re.compile("^Revoke link")).click()
        expect(links).to_have_count(0)
        expect(dialog.get_by_text("No links yet.")).to_be_visible()
        revoked = shared.reload()
        assert revoked is not None and revoked.status == 404
        expect(shared.get_by_role("heading", level=1)).to_have_text("This link is not available")
        expect(shared.locator("body")).not_to_contain_text("front desk")
    finally:
        stranger.close()
