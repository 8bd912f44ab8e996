"""The sidebar's search: results as you type with the matched words marked, and a result
opens its conversation on the branch that holds the message, highlighted."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, sign_in


def _token(http: httpx.Client, person: Person) -> dict[str, str]:
    login = http.post("/api/auth/login", json={"email": person.email, "password": person.password})
    return {"authorization": f"Bearer {login.json()['access_token']}"}


def _say(http: httpx.Client, auth: dict[str, str], cid: str, text: str, **extra: object) -> str:
    posted = http.post(
        f"/api/messages/{cid}", headers=auth, json={"text": text, "respond": False, **extra}
    )
    assert posted.status_code == 201, posted.text
    message_id: str = posted.json()["message"]["message_id"]
    return message_id


def test_a_result_opens_its_message_on_its_branch(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        cid = http.post("/api/convos", headers=auth, json={"title": "Release notes"}).json()[
            "conversation_id"
        ]
        root = _say(http, auth, cid, "Planning the next release")
        # The first answer to `root` ends up on a branch nobody sees once it has a sibling.
        _say(
            http,
            auth,
            cid,
            "We deploy the <b>staging</b> cluster on Thursday",
            parent_message_id=root,
        )
        _say(http, auth, cid, "Actually let us wait for the audit", parent_message_id=root)
        for n in range(30):
            _say(http, auth, cid, f"Filler message number {n} about other things")
        other = http.post("/api/convos", headers=auth, json={"title": "Lunch"}).json()
        _say(http, auth, other["conversation_id"], "Staging a picnic, not a deploy")

    sign_in(page, server, person)
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("deploy stag*")
    results = page.get_by_role("list", name="Search results").get_by_role("link")
    expect(results).to_have_count(2)
    # Ranked: the shorter message, denser in matches, comes first.
    expect(results.first).to_contain_text("Lunch")
    first = results.filter(has_text="Release notes")
    marks = first.locator("mark")
    expect(marks).to_have_text(["deploy", "staging"])
    # Markup in a message is text in the snippet, never elements.
    expect(first).to_contain_text("<b>staging</b>")
    expect(first.locator("b")).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="2 results")).to_be_visible()

    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=artifacts / "search-results-1440.png")

    first.click()
    expect(page).to_have_url(f"{server.url}/c/{cid}")
    found = messages(page).filter(has_text="We deploy the <b>staging</b> cluster")
    expect(found).to_have_class("msg msg-user found")
    expect(found).to_be_in_viewport()
    expect(found).to_be_focused()
    # Its sibling's branch (the newer one, shown by default) is not on screen.
    expect(messages(page).filter(has_text="wait for the audit")).to_have_count(0)
    page.screenshot(path=artifacts / "search-open-1440.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "search-open-1440-dark.png")
    page.emulate_media(color_scheme="light")


def test_keyboard_odd_input_and_escape(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        cid = http.post("/api/convos", headers=auth, json={"title": "Ops"}).json()[
            "conversation_id"
        ]
        target = _say(http, auth, cid, "The invoice for March is overdue")
    sign_in(page, server, person)
    page.set_viewport_size({"width": 375, "height": 800})
    page.get_by_role("button", name="Conversations").click()
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill("*")
    expect(page.get_by_role("status").filter(has_text="Type a word")).to_be_visible()
    box.fill("NEAR(invoice")  # FTS5 syntax is only words here: "near" is in no message
    expect(page.get_by_role("status").filter(has_text="No results.")).to_be_visible()
    box.fill('"invoice')
    results = page.get_by_role("list", name="Search results").get_by_role("link")
    expect(results).to_have_count(1)
    box.fill("invoice")
    expect(results.locator("mark")).to_have_text(["invoice"])
    page.screenshot(path=artifacts / "search-results-375.png")
    box.press("Escape")
    expect(page.get_by_role("list", name="Search results")).to_be_hidden()
    expect(
        page.get_by_role("navigation", name="Conversations").get_by_role("link", name="Ops")
    ).to_be_visible()
    box.fill("overdue")
    expect(results).to_have_count(1)
    box.press("Enter")
    found = page.locator(f'[data-id="{target}"]')
    expect(found).to_have_class("msg msg-user found")
    page.screenshot(path=artifacts / "search-open-375.png")
