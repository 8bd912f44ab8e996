"""Reading a conversation: stop after a reload, tool steps, auto-scroll that lets a person read."""

from __future__ import annotations

import json

from playwright.sync_api import Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import messages, send, sign_in, start_conversation

LONG_REPLY = " ".join(f"word{i}" for i in range(400))


def slow(text: str, delay_ms: int) -> str:
    directive = json.dumps({"reply": LONG_REPLY, "token_delay_ms": delay_ms})
    return f"!fake {directive}\n{text}"


def test_stop_works_after_a_reload(page: Page, server: Server, person: Person) -> None:
    """The reloaded tab never saw the send: it learns the generation from the message list."""
    sign_in(page, server, person)
    send(page, slow("Tell me a long story", delay_ms=150))
    expect(messages(page).nth(1).locator(".msg-body")).to_contain_text("word2", timeout=20_000)
    page.reload()
    reply = messages(page).nth(1)
    expect(reply.locator(".msg-body")).to_contain_text("word4", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    expect(reply).to_contain_text("Stopped before the end", timeout=10_000)
    text = reply.locator(".msg-body").text_content() or ""
    assert "word4" in text and "word399" not in text


def test_tool_calls_and_results_are_collapsed_steps(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        token = login.json()["access_token"]
        created = http.post(
            "/api/agents",
            headers={"authorization": f"Bearer {token}"},
            json={
                "name": "Calc",
                "endpoint": "fake",
                "model": "fake-model",
                "tools": ["calculator"],
            },
        )
        assert created.status_code == 201, created.text
    sign_in(page, server, person)
    page.get_by_label("Model or agent").select_option(label="Agent: Calc")
    script = {
        "script": [
            {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17 * 23"}}]},
            "It is **391**.",
        ]
    }
    send(page, f"!fake {json.dumps(script)}\nWhat is 17 times 23?")
    reply = messages(page).nth(1)
    expect(reply.locator("strong")).to_have_text("391", timeout=20_000)
    call = reply.locator("details.tool").filter(has_text="Tool call")
    result = reply.locator("details.tool").filter(has_text="Tool result")
    expect(call).to_have_count(1)
    expect(result).to_have_count(1)
    # Collapsed until asked: the arguments and the result are not shown in the reply's flow.
    expect(call.get_by_text("17 * 23")).to_be_hidden()
    expect(result.get_by_text("391")).to_be_hidden()
    call.locator("summary").click()
    expect(call.get_by_text("17 * 23")).to_be_visible()
    result.locator("summary").click()
    expect(result.get_by_text("391")).to_be_visible()
    expect(reply).to_contain_text("Calc")


def _distance_from_bottom(page: Page) -> float:
    distance: float = page.evaluate(
        "() => { const s = document.getElementById('messages');"
        " return s.scrollHeight - s.scrollTop - s.clientHeight; }"
    )
    return distance


def _wait_at_bottom(page: Page) -> None:
    page.wait_for_function(
        "() => { const s = document.getElementById('messages');"
        " return s.scrollHeight - s.scrollTop - s.clientHeight < 48; }",
        timeout=5_000,
    )


def test_auto_scroll_pauses_while_reading_up_and_nothing_above_moves(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    conversation_id = start_conversation(page)
    for i in range(25):
        server.post_external(conversation_id, f"status update {i}\n\nline two", {"source": "bot"})
    expect(messages(page)).to_have_count(27, timeout=10_000)
    send(page, slow("A long answer please", delay_ms=40))
    reply = messages(page).nth(28)
    expect(reply.locator(".msg-body")).to_contain_text("word5", timeout=20_000)
    # Following the newest text while the person stays at the bottom.
    _wait_at_bottom(page)

    page.get_by_role("log", name="Messages").hover()
    page.mouse.wheel(0, -900)
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    reading = messages(page).nth(20)
    before = reading.bounding_box()
    text_before = reply.locator(".msg-body").text_content() or ""
    expect(reply.locator(".msg-body")).to_contain_text("word120", timeout=20_000)
    after = reading.bounding_box()
    assert before is not None and after is not None
    # The reply grew below while the message being read did not move on screen.
    assert len(reply.locator(".msg-body").text_content() or "") > len(text_before)
    assert abs(after["y"] - before["y"]) < 1, (before, after)
    assert _distance_from_bottom(page) > 200

    jump.click()
    expect(jump).to_be_hidden()
    expect(reply.locator(".msg-body")).to_contain_text("word399", timeout=30_000)
    expect(reply.get_by_role("button", name="Regenerate this reply")).to_be_visible()
    _wait_at_bottom(page)
