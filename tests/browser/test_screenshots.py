"""Screenshots at 375 px and 1440 px (and dark), kept as test artifacts and for the README."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, send, sign_in

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_screenshots_at_375_and_1440(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    page.set_viewport_size({"width": 1440, "height": 900})
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        for title in ("Quarterly report draft", "Trip to Lisbon", "Team lunch poll"):
            http.post("/api/convos", headers=auth, json={"title": title, "endpoint": "fake"})
    sign_in(page, server, person)
    page.get_by_role("button", name="New chat").click()
    send(page, "Write a greeting function in Python.")
    expect(messages(page).nth(1).locator("pre")).to_be_visible(timeout=20_000)
    conversation_id = page.url.rsplit("/", 1)[1]
    server.post_external(
        conversation_id,
        "Delivery update: your parcel is at the front desk.",
        {"source": "sms", "phoneNumber": "+14155552671"},
    )
    expect(messages(page).nth(2)).to_contain_text("front desk")
    expect(page.get_by_role("heading", level=1)).not_to_have_text("New chat", timeout=20_000)
    with server.api() as http:  # a person's title, renamed live from elsewhere
        renamed = http.patch(
            f"/api/convos/{conversation_id}", headers=auth, json={"title": "Greeting helper"}
        )
        assert renamed.status_code == 200, renamed.text
    expect(page.get_by_role("heading", level=1)).to_have_text("Greeting helper")
    wide = artifacts / "chat-1440.png"
    page.screenshot(path=wide)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "chat-1440-dark.png")
    page.emulate_media(color_scheme="light")

    page.set_viewport_size({"width": 375, "height": 812})
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    page.screenshot(path=artifacts / "chat-375.png")
    page.get_by_role("button", name="Conversations").click()
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    page.screenshot(path=artifacts / "sidebar-375.png")

    if os.environ.get("RELAYCHAT_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(wide, DOCS / "web-ui.png")
