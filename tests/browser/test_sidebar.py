"""The conversations sidebar: paging, archive, delete with confirmation, unseen badges."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import sign_in


def _token(http: httpx.Client, person: Person) -> dict[str, str]:
    login = http.post("/api/auth/login", json={"email": person.email, "password": person.password})
    return {"authorization": f"Bearer {login.json()['access_token']}"}


def test_conversations_page_in_as_the_list_scrolls(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        for n in range(45):
            created = http.post("/api/convos", headers=auth, json={"title": f"Topic {n:02d}"})
            assert created.status_code == 201, created.text
    sign_in(page, server, person)
    links = page.get_by_role("navigation", name="Conversations").get_by_role("link")
    expect(links.first).to_have_text("Topic 44")  # most recently active first
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    links.last.scroll_into_view_if_needed()
    expect(links).to_have_count(45)
    expect(links.last).to_have_text("Topic 00")


def test_archive_and_delete_with_confirmation(page: Page, server: Server, person: Person) -> None:
    with server.api() as http:
        auth = _token(http, person)
        for title in ("Keep me", "Archive me", "Delete me"):
            http.post("/api/convos", headers=auth, json={"title": title})
    sign_in(page, server, person)
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.get_by_role("button", name="Archive Archive me").click()
    expect(sidebar.get_by_role("link", name="Archive me")).to_have_count(0)
    page.get_by_role("button", name="Archived").click()
    expect(sidebar.get_by_role("link")).to_have_text(["Archive me"])
    sidebar.get_by_role("button", name="Unarchive Archive me").click()
    expect(sidebar.get_by_role("link")).to_have_count(0)
    page.get_by_role("button", name="Back to chats").click()
    expect(sidebar.get_by_role("link", name="Archive me")).to_be_visible()

    sidebar.get_by_role("button", name="Delete Delete me").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete “Delete me”")
    dialog.get_by_role("button", name="Cancel").click()
    expect(sidebar.get_by_role("link", name="Delete me")).to_be_visible()
    sidebar.get_by_role("button", name="Delete Delete me").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(sidebar.get_by_role("link", name="Delete me")).to_have_count(0)
    page.reload()
    expect(sidebar.get_by_role("link", name="Delete me")).to_have_count(0)
    expect(sidebar.get_by_role("link", name="Keep me")).to_be_visible()


def test_external_messages_elsewhere_show_a_badge(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        sms = http.post("/api/convos", headers=auth, json={"title": "SMS thread"}).json()
        http.post("/api/convos", headers=auth, json={"title": "Open one"})
    sign_in(page, server, person)
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.get_by_role("link", name="Open one").click()
    for text in ("one", "two"):
        server.post_external(sms["conversation_id"], text, {"source": "sms"})
    badge = sidebar.get_by_label(re.compile("2 new external messages"))
    expect(badge).to_be_visible()
    expect(sidebar.get_by_role("link").first).to_contain_text("SMS thread")  # moved to the top
    page.reload()  # the server counts them: the badge is still there
    expect(badge).to_be_visible()
    sidebar.get_by_role("link", name=re.compile("SMS thread")).click()
    expect(badge).to_have_count(0)
    expect(page.get_by_role("log", name="Messages")).to_contain_text("two")
    # One more while the person has the thread open: seen at once, and marked read.
    with page.expect_response(lambda r: r.url.endswith("/read")) as marked:
        server.post_external(sms["conversation_id"], "three")
        expect(page.get_by_role("log", name="Messages")).to_contain_text("three")
    assert marked.value.status == 200
    page.reload()
    expect(page.get_by_role("log", name="Messages")).to_contain_text("three")
    expect(sidebar.get_by_label(re.compile("new external message"))).to_have_count(0)
    with server.api() as http:
        listed = http.get("/api/convos", headers=_token(http, person)).json()
    assert {c["title"]: c["unseen_external"] for c in listed["conversations"]} == {
        "SMS thread": 0,
        "Open one": 0,
    }


def test_a_rename_in_progress_survives_live_updates(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        sms = http.post("/api/convos", headers=auth, json={"title": "SMS thread"}).json()
        http.post("/api/convos", headers=auth, json={"title": "Draft"})
    sign_in(page, server, person)
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.get_by_role("button", name="Rename Draft").click()
    title = page.get_by_label("New title")
    title.fill("Half typ")
    # Messages elsewhere redraw the list (the SMS thread moves to the top, with a badge).
    for text in ("one", "two"):
        server.post_external(sms["conversation_id"], text, {"source": "sms"})
    expect(sidebar.get_by_label(re.compile("2 new external messages"))).to_be_visible()
    expect(title).to_have_value("Half typ")
    expect(title).to_be_focused()
    title.press_sequentially("ed")
    title.press("Enter")
    expect(sidebar.get_by_role("link", name="Half typed")).to_be_visible()
    with server.api() as http:
        listed = http.get("/api/convos", headers=_token(http, person)).json()
    assert {c["title"] for c in listed["conversations"]} == {"SMS thread", "Half typed"}
