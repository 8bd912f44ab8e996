"""Staying signed in: the access token expires and is renewed from the refresh cookie."""

from __future__ import annotations

from playwright.sync_api import Page, Response, expect

from tests.browser.harness import Person, Server, register
from tests.browser.ui import messages, send, sign_in


def _refreshed(response: Response) -> bool:
    return response.url.endswith("/api/auth/refresh") and response.status == 200


def test_a_person_stays_signed_in_across_access_token_expiry(
    page: Page, short_lived_server: Server
) -> None:
    server = short_lived_server  # access tokens live 3 s
    person: Person = register(server)
    sign_in(page, server, person)
    # Two renewals: the token the page signed in with has expired by now.
    for _ in range(2):
        with page.expect_response(_refreshed, timeout=15_000):
            pass
    send(page, '!fake {"reply": "still here"}\nare you there?')
    expect(messages(page).nth(1)).to_contain_text("still here", timeout=20_000)
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(messages(page).nth(1)).to_contain_text("still here")

    # The refresh cookie is gone (expired, revoked): back to the sign-in form, with the reason.
    page.context.clear_cookies()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("alert").first).to_contain_text("Your session ended")


def test_a_server_that_goes_away_shows_reconnecting_then_catches_up(
    page: Page, short_lived_server: Server
) -> None:
    server = short_lived_server
    person = register(server)
    sign_in(page, server, person)
    send(page, '!fake {"reply": "before"}\nhello')
    expect(messages(page).nth(1)).to_contain_text("before", timeout=20_000)
    conversation_id = page.url.rsplit("/", 1)[1]
    status = page.get_by_role("status").filter(has_text="Reconnecting")

    server.stop()
    expect(status).to_be_visible(timeout=15_000)
    server.start()  # same port, same database; the access token expired meanwhile
    expect(status).to_be_hidden(timeout=30_000)
    server.post_external(conversation_id, "after the outage")
    expect(messages(page).nth(2)).to_contain_text("after the outage", timeout=10_000)
