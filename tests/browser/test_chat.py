"""Chatting in the browser: sign-in, streamed replies, stop, branches, live external messages."""

from __future__ import annotations

import itertools
import json
import re

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import (
    composer,
    messages,
    record_text_of_last_reply,
    seen_texts,
    send,
    sign_in,
    start_conversation,
)

SLOW_REPLY = " ".join(f"word{i}" for i in range(60))


def slow(text: str, reply: str = SLOW_REPLY, delay_ms: int = 120) -> str:
    """A message whose reply the fake model streams slowly."""
    directive = json.dumps({"reply": reply, "token_delay_ms": delay_ms})
    return f"!fake {directive}\n{text}"


def test_register_sign_out_and_in(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/")
    expect(page).to_have_url(re.compile("/login$"))
    page.get_by_role("button", name="Create an account").click()
    page.get_by_label("Name").fill("Bea Example")
    page.get_by_label("Email").fill("bea-register@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.reload()  # the refresh cookie restores the session; the token was only in memory
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_reply_grows_in_steps_then_shows_rendered_markdown(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    record_text_of_last_reply(page)
    send(
        page, slow("Say something", reply="Some **bold** words and `code` here, " * 3, delay_ms=60)
    )
    reply = messages(page).nth(1)
    expect(reply.locator("strong").first).to_have_text("bold", timeout=20_000)
    steps = seen_texts(page)
    final = reply.locator(".msg-body").text_content() or ""
    # Several partial texts, each a prefix of the next, before the final one.
    partial = [text for text in steps if len(text) < len(final.strip())]
    assert len(partial) >= 3, steps
    assert all(b.startswith(a) for a, b in itertools.pairwise(partial)), steps
    expect(page.get_by_role("heading", level=1)).not_to_have_text("New chat")


def test_stop_keeps_the_partial_reply(page: Page, server: Server, person: Person) -> None:
    sign_in(page, server, person)
    send(page, slow("Tell me a long story", delay_ms=250))
    reply = messages(page).nth(1)
    expect(reply.locator(".msg-body")).to_contain_text("word2", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    expect(reply).to_contain_text("Stopped before the end")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    text = reply.locator(".msg-body").text_content() or ""
    assert "word2" in text and "word59" not in text
    expect(reply.get_by_role("button", name="Retry this reply")).to_be_visible()


def test_regenerate_and_navigate_siblings(page: Page, server: Server, person: Person) -> None:
    sign_in(page, server, person)
    send(page, '!fake {"reply": "first answer"}\nQuestion')
    expect(messages(page).nth(1)).to_contain_text("first answer", timeout=20_000)
    page.get_by_role("button", name="Regenerate this reply").click()
    expect(messages(page).nth(1)).to_contain_text("2 / 2", timeout=20_000)
    expect(
        messages(page).nth(1).get_by_role("button", name="Regenerate this reply")
    ).to_be_visible()
    page.get_by_role("button", name="Previous version").click()
    expect(messages(page).nth(1)).to_contain_text("1 / 2")
    expect(messages(page).nth(1)).to_contain_text("first answer")
    page.get_by_role("button", name="Next version").click()
    expect(messages(page).nth(1)).to_contain_text("2 / 2")


def test_edit_sends_a_sibling_branch(page: Page, server: Server, person: Person) -> None:
    sign_in(page, server, person)
    send(page, '!fake {"echo": true}\nthe original question')
    expect(messages(page).nth(1)).to_contain_text("the original question", timeout=20_000)
    messages(page).nth(0).get_by_role("button", name="Edit this message").click()
    edited = page.get_by_label("Edited message")
    edited.fill('!fake {"echo": true}\nthe better question')
    page.get_by_role("button", name="Save & send").click()
    expect(messages(page).nth(0)).to_contain_text("2 / 2")
    expect(messages(page).nth(1)).to_contain_text("the better question", timeout=20_000)
    messages(page).nth(0).get_by_role("button", name="Previous version").click()
    expect(messages(page).nth(0)).to_contain_text("the original question")
    expect(messages(page).nth(1)).to_contain_text("the original question")


def test_an_external_message_and_its_reply_arrive_live(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    conversation_id = start_conversation(page)
    record_text_of_last_reply(page)
    server.post_external(
        conversation_id,
        [{"type": "text", "text": slow("Your parcel has arrived", delay_ms=80)}],
        {"source": "sms", "phoneNumber": "+14155552671", "carrier": "Acme"},
        respond=True,
    )
    external = messages(page).nth(2)
    expect(external).to_contain_text("Your parcel has arrived", timeout=10_000)
    expect(external.get_by_text("sms", exact=True)).to_be_visible()
    expect(external).to_contain_text("+14155552671 · system key")
    external.get_by_text("Details").click()
    expect(external).to_contain_text("Acme")
    reply = messages(page).nth(3)
    expect(reply).to_contain_text("word59", timeout=30_000)
    partial = [t for t in seen_texts(page) if "word59" not in t]
    assert len(partial) >= 3, seen_texts(page)


def test_two_tabs_stay_in_sync(context: BrowserContext, server: Server, person: Person) -> None:
    first = context.new_page()
    sign_in(first, server, person)
    second = context.new_page()
    second.goto(f"{server.url}/")
    expect(second.get_by_role("button", name="Sign out")).to_be_visible()
    send(first, '!fake {"reply": "synced reply"}\nhello from tab one')
    conversation = second.get_by_role("navigation", name="Conversations").get_by_role("link")
    expect(conversation.first).to_be_visible(timeout=20_000)
    conversation.first.click()
    expect(messages(second).nth(1)).to_contain_text("synced reply", timeout=20_000)
    # A rename in one tab shows in the other.
    first.get_by_role("button", name=re.compile("^Rename")).first.click()
    first.get_by_label("New title").fill("Renamed in tab one")
    first.get_by_label("New title").press("Enter")
    expect(second.get_by_role("heading", level=1)).to_have_text("Renamed in tab one")
    expect(conversation.first).to_have_text("Renamed in tab one")


def test_keyboard_only(page: Page, server: Server, person: Person) -> None:
    sign_in(page, server, person)
    page.keyboard.press("Control+Shift+O")
    expect(composer(page)).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(composer(page)).to_have_value("first line\nsecond line")
    page.keyboard.press("Enter")
    expect(messages(page).nth(0)).to_contain_text("first line\nsecond line")
    expect(messages(page).nth(1).locator("pre")).to_contain_text("def greet", timeout=20_000)
    # Stop from the keyboard.
    directive, text = slow("again", delay_ms=250).split("\n")
    page.keyboard.type(directive)
    page.keyboard.press("Shift+Enter")
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(messages(page).nth(3).locator(".msg-body")).to_contain_text("word1", timeout=20_000)
    page.keyboard.press("Escape")
    expect(messages(page).nth(3)).to_contain_text("Stopped before the end")


def test_a_failed_send_keeps_the_text(page: Page, server: Server, person: Person) -> None:
    sign_in(page, server, person)
    page.route("**/api/convos", lambda route: route.abort())
    box = composer(page)
    box.fill("Do not lose me")
    box.press("Enter")
    expect(page.get_by_role("alert").filter(has_text="Not sent")).to_be_visible()
    expect(box).to_have_value("Do not lose me")
    page.unroute("**/api/convos")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(messages(page).nth(0)).to_contain_text("Do not lose me")


def test_a_failed_reply_says_why_and_can_be_retried(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    send(page, '!fake {"fail": "auth"}\nthis will fail')
    reply = messages(page).nth(1)
    expect(reply).to_contain_text("Failed (provider_auth_failed)", timeout=20_000)
    reply.get_by_role("button", name="Retry this reply").click()
    expect(messages(page).nth(1)).to_contain_text("2 / 2", timeout=20_000)


def test_settings_and_model_are_kept_with_the_conversation(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    page.get_by_label("Model or agent").select_option(label="fake · fake-model-mini")
    send(page, "hello")
    expect(messages(page).nth(1)).to_contain_text("fake-model-mini", timeout=20_000)
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("System prompt").fill("Answer like a pirate.")
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    page.reload()
    page.get_by_role("button", name="Settings").click()
    expect(page.get_by_label("System prompt")).to_have_value("Answer like a pirate.")
    expect(page.get_by_label("Temperature")).to_have_value("0.3")
    expect(page.get_by_label("Model or agent")).to_have_value(re.compile("fake-model-mini"))
