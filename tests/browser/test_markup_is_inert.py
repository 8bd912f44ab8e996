"""Markup is text wherever it enters: messages, external messages and metadata, model
replies, titles and agent names. Nothing runs (no dialog, no flag set) and nothing is built."""

from __future__ import annotations

import json

from playwright.sync_api import Dialog, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, send, sign_in

PAYLOADS = [
    "<script>window.__xss = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__xss = 1; alert('img')\">",
    "<svg onload=\"alert('svg')\"></svg>",
    "[click me](javascript:alert('link'))",
    "<a href=\"javascript:alert('a')\">a</a>",
    "<iframe src=\"javascript:alert('frame')\"></iframe>",
    "![x](https://tracker.example/pixel.png)",
]
PAYLOAD = " ".join(PAYLOADS)
# Elements of our own page that may carry these names: none in the page body.
INJECTED = ", ".join(
    [
        *("body img", "body script", "body svg", "body iframe", "body [onerror]", "body [onload]"),
        *("a[href^='javascript']", "a[href^='data']"),
    ]
)


def test_markup_through_every_entry_is_inert(page: Page, server: Server, person: Person) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page, server, person)
    with server.api() as http:
        token = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        ).json()["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        agent = http.post(
            "/api/agents",
            headers=auth,
            json={"name": PAYLOADS[1], "endpoint": "fake", "model": "fake-model"},
        )
        assert agent.status_code == 201, agent.text
        convo = http.post(
            "/api/convos",
            headers=auth,
            json={
                "title": PAYLOADS[0],
                "endpoint": "agents",
                "agent_id": agent.json()["agent_id"],
            },
        ).json()
    page.reload()
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar).to_contain_text("<script>window.__xss")  # the title, as text
    sidebar.get_by_role("link").first.click()

    # A person's message, answered by the agent (its name is markup) with a markup reply.
    directive = json.dumps({"reply": PAYLOAD})
    send(page, f"!fake {directive}\n{PAYLOAD}")
    reply = messages(page).nth(1)
    expect(reply).to_contain_text("[click me](javascript:alert('link'))", timeout=20_000)
    expect(reply).to_contain_text("<img src=x onerror")  # the agent's name, as text

    # An external message with markup in its text and metadata.
    server.post_external(
        convo["conversation_id"], PAYLOAD, {"source": PAYLOADS[1], PAYLOADS[0]: PAYLOADS[2]}
    )
    external = messages(page).nth(2)
    expect(external).to_contain_text("<iframe src=")
    external.get_by_text("Details").click()
    expect(external).to_contain_text("<svg onload")

    # A title set in place, with markup.
    page.get_by_role("button", name="Rename").first.click()
    page.get_by_label("New title").fill(PAYLOADS[2])
    page.get_by_label("New title").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(PAYLOADS[2])

    assert page.locator(INJECTED).count() == 0
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []
