"""The profile page: name and phone number, the password, and signing out everywhere."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import console_screenshots, sign_in


def field(page: Page, label: str) -> Locator:
    """The control with this label and what is shown around it (its hint, its error)."""
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True))


def open_profile(page: Page, person: Person) -> None:
    page.get_by_role("link", name=person.name).click()
    expect(page.get_by_role("heading", name="Profile", level=2)).to_be_visible()


def bearer(http: httpx.Client, person: Person, password: str | None = None) -> httpx.Response:
    return http.post(
        "/api/auth/login",
        json={"email": person.email, "password": password or person.password},
    )


def test_an_invalid_phone_number_is_shown_at_its_field_and_a_valid_one_saved_as_e164(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    sign_in(page, server, person)
    open_profile(page, person)
    phone = page.get_by_label("Phone number", exact=True)

    phone.fill("12")
    page.get_by_role("button", name="Save profile").click()
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(field(page, "Phone number").get_by_role("alert")).to_be_visible()
    with server.api() as http:
        token = bearer(http, person).json()["access_token"]
        me = http.get("/api/user", headers={"authorization": f"Bearer {token}"}).json()
    assert me["phone_number"] is None

    page.get_by_role("textbox", name="Name", exact=True).fill("Ann Renamed")
    phone.fill("(212) 555-0199")
    page.get_by_role("button", name="Save profile").click()
    expect(phone).to_have_value("+12125550199")
    expect(page.get_by_role("status").filter(has_text="+12125550199")).to_be_visible()
    expect(field(page, "Phone number").get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("link", name="Ann Renamed")).to_be_visible()
    with server.api() as http:
        me = http.get("/api/user", headers={"authorization": f"Bearer {token}"}).json()
    assert (me["name"], me["phone_number"]) == ("Ann Renamed", "+12125550199")

    console_screenshots(page, artifacts, "profile")


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(
    browser: Browser, server: Server, person: Person
) -> None:
    other = browser.new_context()
    here = browser.new_context()
    try:
        before = other.new_page()
        sign_in(before, server, person)
        open_profile(before, person)
        # The access token that tab holds, to ask the API about it directly afterwards.
        with before.expect_request(_profile_read) as asked:
            before.reload()
        stale = asked.value.headers["authorization"]

        page = here.new_page()
        sign_in(page, server, person)
        open_profile(page, person)
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if "/api/user/password" in r.url else None)
        page.get_by_label("Current password", exact=True).fill(person.password)
        page.get_by_label("New password", exact=True).fill("a brand new secret")
        page.get_by_label("Repeat the new password", exact=True).fill("a brand new secert")
        page.get_by_role("button", name="Change password").click()
        expect(field(page, "Repeat the new password").get_by_role("alert")).to_contain_text(
            "differ"
        )
        assert sent == []  # caught in the page: nothing went to the API

        page.get_by_label("Current password", exact=True).fill("not my password")
        page.get_by_label("Repeat the new password", exact=True).fill("a brand new secret")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_label("Current password", exact=True)).to_have_attribute(
            "aria-invalid", "true"
        )
        expect(field(page, "Current password").get_by_role("alert")).to_be_visible()

        page.get_by_label("Current password", exact=True).fill(person.password)
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("status").filter(has_text="Password changed")).to_be_visible()
        expect(page.get_by_label("New password", exact=True)).to_have_value("")

        # The other browser's token stopped at once; its tab is signed out at its next call.
        with server.api() as http:
            refused = http.get("/api/user", headers={"authorization": stale})
            assert refused.status_code == 401, refused.text
            assert bearer(http, person).status_code == 401
            assert bearer(http, person, "a brand new secret").status_code == 200
        expect(before.get_by_role("button", name="Sign in")).to_be_visible(timeout=15_000)
        expect(before.get_by_role("alert").first).to_contain_text("session ended")

        # This one goes on, across a reload too (its refresh cookie was spared).
        page.reload()
        expect(page.get_by_role("heading", name="Profile", level=2)).to_be_visible()
        expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    finally:
        other.close()
        here.close()


def _profile_read(request: Request) -> bool:
    return request.url.endswith("/api/user") and request.method == "GET"


def test_sign_out_everywhere_ends_every_session_this_one_too(
    browser: Browser, server: Server, person: Person
) -> None:
    other = browser.new_context()
    here = browser.new_context()
    try:
        elsewhere = other.new_page()
        sign_in(elsewhere, server, person)
        page = here.new_page()
        sign_in(page, server, person)
        open_profile(page, person)

        page.get_by_role("button", name="Sign out everywhere").click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        expect(page.get_by_role("heading", name="Profile", level=2)).to_be_visible()

        with page.expect_response(lambda r: r.url.endswith("/api/auth/logout-all")) as ended:
            page.get_by_role("button", name="Sign out everywhere").click()
            page.get_by_role("dialog").get_by_role("button", name="Sign out everywhere").click()
        assert ended.value.status == 204
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        # Signed out by the page itself, as by "Sign out": not by a later request's refusal,
        # which would say the session ended.
        expect(page.get_by_role("alert")).to_have_count(0)
        assert page.url.endswith("/login")
        page.reload()  # no refresh cookie left: still signed out
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()

        expect(elsewhere.get_by_role("button", name="Sign in")).to_be_visible(timeout=15_000)
    finally:
        other.close()
        here.close()
