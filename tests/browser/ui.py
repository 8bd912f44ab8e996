"""What a person does in the UI, written once for the browser tests."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.harness import Person, Server


def sign_in(page: Page, server: Server, person: Person) -> None:
    page.goto(f"{server.url}/")
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    # exact: a conversation titled "New chat" (every new SMS thread) is a button's name too.
    expect(page.get_by_role("button", name="New chat", exact=True)).to_be_visible()


def composer(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_label("Message", exact=True)


def send(page: Page, text: str) -> None:
    box = composer(page)
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def start_conversation(page: Page) -> str:
    """Send a first message, wait for its short reply, and return the new conversation's id."""
    send(page, '!fake {"reply": "ok"}\nhello')
    expect(messages(page).nth(1)).to_contain_text("ok", timeout=20_000)
    return page.url.rsplit("/", 1)[1]


def messages(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("log", name="Messages").get_by_role("article")


def record_text_of_last_reply(page: Page) -> None:
    """Keep every distinct text the last assistant message shows, to see it grow."""
    page.evaluate(
        """() => {
        window.__seen = [];
        const list = document.getElementById("message-list");
        new MutationObserver(() => {
          const bodies = list.querySelectorAll(".msg-assistant .msg-body");
          const text = bodies.length ? bodies[bodies.length - 1].textContent : "";
          if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
        }).observe(list, { subtree: true, childList: true, characterData: true });
      }"""
    )


def seen_texts(page: Page) -> list[str]:
    texts: list[str] = page.evaluate("() => window.__seen")
    return texts


def console_screenshots(page: Page, artifacts: Path, name: str) -> None:
    """A console page at 1440 px (light and dark) and 375 px as `<name>-1440.png`,
    `<name>-1440-dark.png` and `<name>-375.png`, each tall enough to show all of the page
    (the console scrolls inside the window, so a full-page shot would cut it)."""
    for width, scheme, suffix in (
        (1440, "light", "1440"),
        (1440, "dark", "1440-dark"),
        (375, "light", "375"),
    ):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        page.set_viewport_size({"width": width, "height": 900})
        tall: int = page.evaluate("() => document.getElementById('console-body').scrollHeight")
        page.set_viewport_size({"width": width, "height": min(tall + 60, 4000)})
        page.screenshot(path=artifacts / f"{name}-{suffix}.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 860})
