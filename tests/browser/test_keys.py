"""The API keys page: a key made in the page posts, is limited, audited, rotated and revoked;
the API's refusals land next to their fields; the pattern preview says what the server does."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import Person, Server
from tests.browser.ui import sign_in


def _token(http: httpx.Client, person: Person) -> dict[str, str]:
    login = http.post("/api/auth/login", json={"email": person.email, "password": person.password})
    return {"authorization": f"Bearer {login.json()['access_token']}"}


def _post(server: Server, secret: str, conversation_id: str) -> httpx.Response:
    """What a system holding the key does: an external message into a conversation."""
    with server.api() as http:
        return http.post(
            f"/api/messages/{conversation_id}",
            headers={"x-api-key": secret},
            json={"role": "external", "content": "Parcel at the front desk", "respond": False},
        )


def _audit(server: Server, person: Person, key_id: str) -> list[dict[str, Any]]:
    with server.api() as http:
        answer = http.get(
            f"/api/keys/{key_id}/audit", headers=_token(http, person), params={"limit": 200}
        )
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _open_keys(page: Page) -> None:
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")


def _copied_secret(page: Page, box: Locator) -> str:
    """Copy the secret with the page's button and read it back from the clipboard."""
    box.get_by_role("button", name="Copy").click()
    expect(box.get_by_role("button", name="Copied")).to_be_visible()
    secret: str = page.evaluate("() => navigator.clipboard.readText()")
    return secret


def test_a_key_made_in_the_page_posts_is_limited_audited_rotated_and_revoked(
    page: Page, server: Server, person: Person, artifacts: Path
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    started = time.time()
    tag = uuid.uuid4().hex[:8]
    allowed, other = f"ops-{tag}-1", f"dev-{tag}-1"
    with server.api() as http:
        auth = _token(http, person)
        for conversation_id in (allowed, other):
            made = http.post(
                "/api/convos",
                headers=auth,
                json={"conversation_id": conversation_id, "endpoint": "fake", "title": "Parcels"},
            )
            assert made.status_code == 201, made.text
    sign_in(page, server, person)
    _open_keys(page)
    expect(page.get_by_text("No keys yet.")).to_be_visible()

    page.get_by_role("button", name="New key").click()
    form = page.get_by_role("form", name="New API key")
    form.get_by_label("Name", exact=True).fill("Parcel desk")
    form.get_by_label("Only conversations whose id matches a pattern").check()
    form.get_by_role("textbox", name="Pattern 1").fill(f"ops-{tag}-*")
    sample = form.get_by_label("Try a conversation id")
    verdict = form.get_by_role("status")
    sample.fill(allowed)
    expect(verdict).to_have_text(f"Allowed: {allowed} matches ops-{tag}-*.")
    sample.fill(other)
    expect(verdict).to_have_text(f"Refused: {other} matches none of the patterns.")
    form.get_by_label("Requests").fill("3")
    form.get_by_label("Window (seconds)").fill("60")
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.screenshot(path=artifacts / "keys-form-1440.png")
    page.set_viewport_size({"width": 375, "height": 812})
    form.get_by_role("textbox", name="Pattern 1").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "keys-form-375.png")
    page.set_viewport_size({"width": 1280, "height": 860})
    form.get_by_role("button", name="Create key").click()

    box = page.get_by_role("status").filter(has_text="Secret of “Parcel desk”")
    expect(box).to_contain_text("shown only this once")
    secret = _copied_secret(page, box)
    assert secret.startswith("rck_")
    expect(box.locator("code")).to_have_text(secret)
    row = page.get_by_role("row").filter(has_text="Parcel desk")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text(secret[: secret.index("_", 4)])  # the prefix, never the secret
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=artifacts / "keys-list-1440.png")
    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=artifacts / "keys-list-375.png")
    page.set_viewport_size({"width": 1280, "height": 860})
    box.get_by_role("button", name="I have saved it").click()
    expect(box).to_have_count(0)
    assert secret not in page.content()

    # What the system holding the key sees: allowed, refused by the pattern, then the limit.
    assert _post(server, secret, allowed).status_code == 201
    refused = _post(server, secret, other)
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "allowed_conversations"
    assert _post(server, secret, allowed).status_code == 201
    limited = _post(server, secret, allowed)
    assert limited.status_code == 429, limited.text
    assert "retry-after" in limited.headers
    for _ in range(20):  # more than a page of the audit trail
        assert _post(server, secret, allowed).status_code == 429
    key_id = next(k["id"] for k in _page_keys(server, person) if k["name"] == "Parcel desk")
    deadline = time.monotonic() + 10
    while len(_audit(server, person, key_id)) < 24:  # refusals are written in batches
        assert time.monotonic() < deadline, "the audit rows were not written"
        time.sleep(0.05)

    page.get_by_role("link", name="Parcel desk").click()
    expect(page).to_have_url(f"{server.url}/keys/{key_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("API key: Parcel desk")
    trail = page.get_by_role("region", name="Audit trail")
    rows = trail.get_by_role("row").filter(has=page.get_by_role("cell"))
    expect(rows).to_have_count(20)
    trail.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(24)
    expect(trail.get_by_role("button", name="Load more")).to_be_hidden()
    accepted = rows.filter(has_text="accepted")
    expect(accepted).to_have_count(2)
    expect(accepted.first.get_by_role("link", name=allowed)).to_have_attribute(
        "href", f"/c/{allowed}"
    )
    expect(rows.filter(has_text="permission_denied")).to_have_count(1)
    expect(rows.filter(has_text="permission_denied")).to_contain_text(other)
    expect(rows.filter(has_text="rate_limited")).to_have_count(21)
    expect(rows.filter(has_text="rate_limited").first).to_contain_text("429")

    trail.get_by_label("Outcome").select_option("accepted")
    trail.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="refused")).to_have_count(0)
    trail.get_by_label("Outcome").select_option("refused")
    trail.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(20)
    expect(rows.filter(has_text="accepted")).to_have_count(0)
    trail.get_by_label("Outcome").select_option("")
    # Until a minute before the test began: nothing it sent.
    before = time.strftime("%Y-%m-%dT%H:%M", time.localtime(started - 60))
    trail.get_by_label("Until").fill(before)
    trail.get_by_role("button", name="Apply").click()
    expect(trail.get_by_text("No requests with this key match.")).to_be_visible()
    trail.get_by_label("Until").fill("")
    trail.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(20)
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.screenshot(path=artifacts / "keys-1440.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "keys-1440-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    trail.get_by_role("heading", name="Audit trail").evaluate("node => node.scrollIntoView()")
    page.screenshot(path=artifacts / "keys-375.png")
    page.set_viewport_size({"width": 1280, "height": 860})

    details = page.get_by_role("region", name="Details")
    details.get_by_role("button", name="Rotate").click()
    rotate = page.get_by_role("form", name="Rotate Parcel desk")
    rotate.get_by_label("Grace period").select_option(label="5 minutes")
    rotate.get_by_role("button", name="Rotate secret").click()
    box = page.get_by_role("status").filter(has_text="New secret for “Parcel desk”")
    rotated = _copied_secret(page, box)
    assert rotated.startswith("rck_") and rotated != secret
    expect(details).to_contain_text("rotating out")
    box.get_by_role("button", name="I have saved it").click()
    # Both secrets authenticate during the grace period (the limit still holds: 429).
    assert _post(server, rotated, allowed).status_code == 429
    assert _post(server, secret, allowed).status_code == 429

    details.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Revoke “Parcel desk”")
    dialog.get_by_role("button", name="Cancel").click()
    expect(details).to_contain_text("rotating out")
    details.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(details).to_contain_text("revoked")
    expect(details.get_by_role("button", name="Rotate")).to_have_count(0)
    gone = _post(server, rotated, allowed)
    assert gone.status_code == 403 and gone.json()["code"] == "api_key_revoked", gone.text

    details.get_by_role("link", name="All keys").click()
    expect(page.get_by_role("row").filter(has_text="Parcel desk")).to_contain_text("revoked")


def _page_keys(server: Server, person: Person) -> list[dict[str, Any]]:
    with server.api() as http:
        answer = http.get("/api/keys", headers=_token(http, person))
    assert answer.status_code == 200, answer.text
    keys: list[dict[str, Any]] = answer.json()["keys"]
    return keys


def test_the_apis_refusals_land_next_to_their_fields(
    page: Page, server: Server, person: Person
) -> None:
    sign_in(page, server, person)
    _open_keys(page)
    page.get_by_role("button", name="New key").click()
    form = page.get_by_role("form", name="New API key")
    form.get_by_label("Name", exact=True).fill("Too eager")
    form.get_by_label("Only conversations whose id matches a pattern").check()
    form.get_by_role("textbox", name="Pattern 1").fill("sms-*")
    form.get_by_role("button", name="Add pattern").click()
    too_long = form.get_by_role("textbox", name="Pattern 2")
    too_long.fill("x" * 129)
    requests = form.get_by_label("Requests")
    requests.fill("0")
    form.get_by_role("button", name="Create key").click()

    expect(requests).to_have_attribute("aria-invalid", "true")
    expect(requests).to_have_accessible_description("Input should be greater than 0")
    expect(too_long).to_have_attribute("aria-invalid", "true")
    expect(too_long).to_be_focused()
    pattern_note = form.get_by_role("alert").filter(has_text="at most 128 characters")
    expect(pattern_note).to_have_count(1)
    # Said with the row it names, not with the other pattern.
    expect(too_long).to_have_accessible_description(re.compile("at most 128 characters"))
    expect(form.get_by_role("textbox", name="Pattern 1")).not_to_have_attribute(
        "aria-invalid", "true"
    )
    assert _page_keys(server, person) == []  # nothing half-saved

    form.get_by_role("button", name="Remove pattern 2").click()
    requests.fill("5")
    form.get_by_role("button", name="Create key").click()
    box = page.get_by_role("status").filter(has_text="Secret of “Too eager”")
    box.get_by_role("button", name="I have saved it").click()
    [key] = _page_keys(server, person)
    assert key["permissions"]["allowed_conversations"] == ["sms-*"]
    assert key["permissions"]["rate_limit"] == {"requests": 5, "window": 60}

    # Changing it: the form holds what is stored; the domain's refusal lands at its field too.
    page.get_by_role("button", name="Change Too eager").click()
    form = page.get_by_role("form", name="Change Too eager")
    expect(form.get_by_role("textbox", name="Pattern 1")).to_have_value("sms-*")
    expect(form.get_by_label("Requests")).to_have_value("5")
    expires = form.get_by_label("Expires")
    expires.fill("2020-01-01T10:00")
    form.get_by_label("Requests").fill("10")
    form.get_by_role("button", name="Save changes").click()
    expect(expires).to_have_accessible_description(re.compile("must be in the future"))
    assert _page_keys(server, person) == [key]
    next_year = time.localtime().tm_year + 1
    expires.fill(f"{next_year}-06-01T12:00")
    form.get_by_label("Required metadata").fill("source, phoneNumber")
    budget = form.get_by_label("Daily token budget")
    expect(budget).to_have_value("")
    budget.fill("50000")
    form.get_by_label("Reply by default when a message does not say").uncheck()
    form.get_by_role("button", name="Save changes").click()
    expect(form).to_have_count(0)
    [changed] = _page_keys(server, person)
    assert changed["permissions"] == {
        **key["permissions"],
        "rate_limit": {"requests": 10, "window": 60},
        "required_metadata": ["source", "phoneNumber"],
        "respond_default": False,
        "max_tokens_per_day": 50000,
    }
    # The form shows the stored budget when opened again.
    page.get_by_role("button", name="Change Too eager").click()
    expect(
        page.get_by_role("form", name="Change Too eager").get_by_label("Daily token budget")
    ).to_have_value("50000")
    assert changed["expires_at"].startswith(f"{next_year}-06-01")


# Patterns where a naive glob (or a naive glob-to-regex) parts ways with Python's fnmatch,
# which the server uses: each with ids it should and should not accept.
TRICKY = [
    ("sms-*", ["sms-1", "SMS-1", "sms"]),
    ("a.b", ["a.b", "aXb"]),
    ("a+1*", ["a+15", "aa15"]),
    ("a?c", ["abc", "ac"]),
    ("**x", ["ax", "x", "axy"]),
    ("[!a]x", ["bx", "ax"]),
    ("[^a]x", ["bx", "ax"]),
    ("[z-a]*", ["z1", "a1"]),
    ("[a--z]", ["z", "m", "a"]),
    ("[Z-A!x]y", ["by", "xy"]),
    ("x[!-.]", ["xa", "x-", "x."]),
    ("[]a]x", ["ax", "bx"]),
    ("[ab", ["ab", "a"]),
    ("*-[0-9][0-9]", ["x-1-42", "x-4a"]),
]


def test_the_pattern_preview_says_what_the_server_does(
    page: Page, server: Server, person: Person
) -> None:
    with server.api() as http:
        auth = _token(http, person)
        secrets = {}
        for pattern, _ids in TRICKY:
            made = http.post(
                "/api/keys",
                headers=auth,
                json={"name": pattern, "permissions": {"allowed_conversations": [pattern]}},
            )
            assert made.status_code == 201, made.text
            secrets[pattern] = made.json()["secret"]
    sign_in(page, server, person)
    _open_keys(page)
    page.get_by_role("button", name="New key").click()
    form = page.get_by_role("form", name="New API key")
    form.get_by_label("Only conversations whose id matches a pattern").check()
    pattern_box = form.get_by_role("textbox", name="Pattern 1")
    sample = form.get_by_label("Try a conversation id")
    verdict = form.get_by_role("status")
    answers = set()
    for pattern, ids in TRICKY:
        pattern_box.fill(pattern)
        for conversation_id in ids:
            sample.fill(conversation_id)
            expect(verdict).to_have_text(
                re.compile(rf"(Allowed|Refused): {re.escape(conversation_id)} matches")
            )
            says_allowed = (verdict.text_content() or "").startswith("Allowed")
            # The server checks the pattern before it looks for the conversation: past the
            # pattern, a key that may not create conversations hears 404 for one that is missing.
            answer = _post(server, secrets[pattern], conversation_id)
            body = answer.json()
            refused_by_pattern = answer.status_code == 403 and body.get("rule") == (
                "allowed_conversations"
            )
            assert refused_by_pattern or answer.status_code == 404, answer.text
            assert says_allowed == (not refused_by_pattern), (pattern, conversation_id, body)
            answers.add(says_allowed)
    assert answers == {True, False}
