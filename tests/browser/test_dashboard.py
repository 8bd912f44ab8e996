"""The dashboard: a person's external traffic, refusals and replies, counted live."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Request, Response, expect

from tests.browser.harness import Person, Server, register, serve
from tests.browser.ui import console_screenshots, sign_in

# The page refetches every 10 s, and soon after a message event: a refusal causes no event,
# so its count may take a whole interval to show.
REFRESH = 20_000

Auth = dict[str, str]


def member(server: Server, name: str) -> tuple[Person, Auth]:
    """A person who is not an admin (the server's first account is), and their token."""
    while True:
        person = register(server, name)
        with server.api() as http:
            login = http.post(
                "/api/auth/login", json={"email": person.email, "password": person.password}
            )
        assert login.status_code == 200, login.text
        if login.json()["user"]["role"] != "admin":
            return person, {"authorization": f"Bearer {login.json()['access_token']}"}


def conversation(server: Server, auth: Auth) -> str:
    with server.api() as http:
        made = http.post(
            "/api/convos", headers=auth, json={"title": "Deliveries", "endpoint": "fake"}
        )
    assert made.status_code == 201, made.text
    conversation_id: str = made.json()["conversation_id"]
    return conversation_id


def api_key(server: Server, auth: Auth, permissions: dict[str, object] | None = None) -> str:
    with server.api() as http:
        made = http.post(
            "/api/keys", headers=auth, json={"name": "gateway", "permissions": permissions or {}}
        )
    assert made.status_code == 201, made.text
    secret: str = made.json()["secret"]
    return secret


def post(
    server: Server, key: str, conversation_id: str, status: int, text: str = "Parcel arrived"
) -> None:
    """An external message with `key`; `status` is the answer it must get. Asking for a
    reply waits for it, so the reply has ended before the page counts it."""
    respond = text.startswith("!fake")
    headers = {"x-api-key": key, **({"prefer": "wait=30"} if respond else {})}
    body = {"role": "external", "content": text, "respond": respond}
    with server.api() as http:
        answer = http.post(f"/api/messages/{conversation_id}", headers=headers, json=body)
    assert answer.status_code == status, answer.text


def open_dashboard(page: Page) -> None:
    page.get_by_role("navigation").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    expect(page.get_by_text(re.compile("updated"))).to_be_visible()


def chart_table(page: Page, caption: str) -> Locator:
    return page.get_by_role("table", name=re.compile(f"^{re.escape(caption)}"))


def on_screen(locator: Locator) -> bool:
    """Whether a person sees it: what is at its middle belongs to it (a visually hidden
    table is there for screen readers, clipped to nothing on the screen)."""
    locator.scroll_into_view_if_needed()
    seen: bool = locator.evaluate(
        """(node) => {
        const box = node.getBoundingClientRect();
        const middle = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
        return node.contains(middle);
      }"""
    )
    return seen


def expect_totals(table: Locator, *counts: int, timeout: float = 5_000) -> None:
    total = table.get_by_role("row").filter(has=table.page.get_by_role("rowheader", name="Total"))
    expect(total.get_by_role("cell")).to_have_text([str(n) for n in counts], timeout=timeout)


def expect_refusals(page: Page, expected: dict[str, int], timeout: float = 5_000) -> None:
    table = chart_table(page, "Refused external messages by code")
    expect(table.get_by_role("rowheader")).to_have_text(list(expected), timeout=timeout)
    expect(table.get_by_role("cell")).to_have_text([str(n) for n in expected.values()])


def test_dashboard_counts_external_messages_refusals_and_replies_live(
    page: Page, server: Server, artifacts: Path
) -> None:
    ann, auth = member(server, "Ann Example")
    conversation_id = conversation(server, auth)
    key = api_key(server, auth)
    limited = api_key(server, auth, {"rate_limit": {"requests": 1, "window": 3600}})
    post(server, key, conversation_id, 201)
    post(server, key, conversation_id, 201)
    post(server, key, conversation_id, 200, '!fake {"reply": "On its way."}\nWhere is it?')
    post(server, key, "no-such-conversation", 404)
    post(server, key, "no-such-conversation", 404)
    post(server, limited, conversation_id, 201)
    post(server, limited, conversation_id, 429)

    sign_in(page, server, ann)
    open_dashboard(page)
    external = page.get_by_role("region", name="External messages")
    expect(
        external.get_by_role("img", name=re.compile("^External messages per minute"))
    ).to_be_visible()
    expect(page.get_by_text("Your keys and conversations")).to_be_visible()
    table = chart_table(page, "External messages per minute, the last hour")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["From", "accepted", "refused", "rate-limited"]
    )
    expect_totals(table, 4, 2, 1)
    expect_refusals(page, {"conversation_not_found": 2, "rate_limited": 1})
    expect_totals(chart_table(page, "Replies per minute, the last hour"), 1, 0)
    # The tables are there for screen readers; a sighted person opens one with its button.
    assert not on_screen(table)
    external.get_by_role("button", name="Show table").click()
    assert on_screen(table)

    page.get_by_role("radio", name="Last day").check()
    day = chart_table(page, "External messages per 15 minutes, the last 24 hours")
    expect_totals(day, 4, 2, 1)
    expect(page).to_have_url(re.compile(r"/dashboard\?window=24h$"))
    # The same refusals in both windows: the table still says which window it counts.
    expect(chart_table(page, "Refused external messages by code, the last 24 hours")).to_have_count(
        1
    )

    # New traffic shows up on the open page, without a reload.
    page.evaluate("() => { window.stillThisPage = true; }")
    post(server, key, "no-such-conversation", 404)
    expect_totals(day, 4, 3, 1, timeout=REFRESH)
    post(server, key, conversation_id, 201)
    expect_totals(day, 5, 3, 1, timeout=REFRESH)
    expect_refusals(page, {"conversation_not_found": 3, "rate_limited": 1})
    assert page.evaluate("() => window.stillThisPage") is True

    page.set_viewport_size({"width": 1440, "height": 1300})
    page.get_by_role("radio", name="Last hour").check()
    expect_totals(chart_table(page, "External messages per minute"), 5, 3, 1)
    page.screenshot(path=artifacts / "dashboard-1440.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "dashboard-1440-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 1900})
    page.screenshot(path=artifacts / "dashboard-375.png")


def test_a_person_sees_only_what_their_own_keys_caused(page: Page, server: Server) -> None:
    ann, ann_auth = member(server, "Ann Example")
    bob, bob_auth = member(server, "Bob Example")
    ann_conversation = conversation(server, ann_auth)
    bob_conversation = conversation(server, bob_auth)

    sign_in(page, server, ann)
    open_dashboard(page)
    expect(page.get_by_text("No external messages in this window.")).to_be_visible()
    expect(page.get_by_text("No refusals in this window.")).to_be_visible()
    expect(page.get_by_text("No replies in this window.")).to_be_visible()

    ann_key = api_key(server, ann_auth)
    ann_sms_only = api_key(server, ann_auth, {"allowed_conversations": ["sms-*"]})
    bob_key = api_key(server, bob_auth)
    for _ in range(3):
        post(server, bob_key, bob_conversation, 201)
        post(server, bob_key, "no-such-conversation", 404)
    post(server, ann_key, ann_conversation, 201)
    post(server, ann_sms_only, ann_conversation, 403)

    table = chart_table(page, "External messages per minute")
    expect_totals(table, 1, 1, 0, timeout=REFRESH)
    expect_refusals(page, {"permission_denied": 1})

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, server, bob)
    open_dashboard(page)
    expect_totals(chart_table(page, "External messages per minute"), 3, 3, 0)
    expect_refusals(page, {"conversation_not_found": 3})


@pytest.fixture
def fresh_server(
    browser_type_launch_args: dict[str, Any],
    fake_llm_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A server of its own, whose first account, the admin, the test makes."""
    yield from serve(tmp_path_factory.mktemp("dashboard"), fake_llm_url)


def test_an_admin_sees_every_key(page: Page, fresh_server: Server) -> None:
    server = fresh_server
    admin = register(server, "Ada Admin")  # the first account
    _, auth = member(server, "Ann Example")
    key = api_key(server, auth)
    post(server, key, conversation(server, auth), 201)
    post(server, key, "no-such-conversation", 404)

    sign_in(page, server, admin)
    open_dashboard(page)
    expect(page.get_by_text("All keys and conversations")).to_be_visible()
    expect_totals(chart_table(page, "External messages per minute"), 1, 1, 0)
    expect_refusals(page, {"conversation_not_found": 1})


def is_stats(exchange: Request | Response) -> bool:
    return "/api/stats" in exchange.url


def set_hidden(page: Page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background, or comes back."""
    page.evaluate(
        """(hidden) => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
        document.dispatchEvent(new Event("visibilitychange"));
      }""",
        hidden,
    )


def test_refreshes_every_10_s_while_shown_and_visible_only(page: Page, server: Server) -> None:
    ann, _ = member(server, "Ann Example")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if is_stats(request) else None)
    page.clock.install()
    sign_in(page, server, ann)
    open_dashboard(page)
    page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=2))  # time moves when we say

    with page.expect_response(is_stats):  # answered: no request is left in flight
        page.clock.run_for(10_000)
    asked.clear()
    set_hidden(page, True)
    page.clock.run_for(60_000)
    assert asked == []
    with page.expect_request(is_stats):  # at once, without waiting for the next 10 s
        set_hidden(page, False)

    page.get_by_role("button", name="New chat").click()  # another view: the page is gone
    expect(page.get_by_role("log", name="Messages")).to_be_visible()
    asked.clear()
    page.clock.run_for(60_000)
    set_hidden(page, False)
    assert asked == []


def usage_of(server: Server, auth: Auth, group_by: str) -> dict[str, Any]:
    with server.api() as http:
        answer = http.get("/api/usage", params={"group_by": group_by}, headers=auth)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def test_tokens_of_replies_by_time_model_and_key(
    page: Page, server: Server, artifacts: Path
) -> None:
    ann, auth = member(server, "Ann Example")
    conversation_id = conversation(server, auth)
    key = api_key(server, auth)
    post(server, key, conversation_id, 200, '!fake {"reply": "On its way."}\nWhere is it?')
    # A provider that sends no counts: relaychat estimates them, and says so.
    post(server, key, conversation_id, 200, '!fake {"reply": "Tomorrow.", "usage": false}\nWhen?')

    sign_in(page, server, ann)
    open_dashboard(page)
    totals = usage_of(server, auth, "model")["totals"]
    assert (totals["replies"], totals["estimated_replies"]) == (2, 1)
    tile = page.get_by_role("term").filter(has_text=re.compile("^Tokens$")).locator("..")
    expect(tile).to_contain_text(f"{totals['total_tokens']:,}")
    expect(tile).to_contain_text(
        f"{totals['prompt_tokens']:,} in · {totals['completion_tokens']:,} out · 1 estimated"
    )
    tokens = page.get_by_role("region", name="Tokens", exact=True)
    expect(tokens.get_by_role("img", name=re.compile("^Tokens per minute"))).to_be_visible()
    expect(tokens.get_by_text("1 of 2 replies counted by estimate")).to_be_visible()
    table = chart_table(page, "Tokens per minute, the last hour")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["From", "in", "out", "estimated replies"]
    )
    expect_totals(table, totals["prompt_tokens"], totals["completion_tokens"], 1)

    models = chart_table(page, "Tokens by model")
    expect(models.get_by_role("rowheader")).to_have_text(["fake/fake-model"])
    by_model = page.get_by_role("region", name="Tokens by model")
    expect(
        by_model.get_by_role("img", name=re.compile(r"fake.fake-model \(estimated\) \d"))
    ).to_be_visible()
    expect(models.get_by_role("cell")).to_have_text(
        [str(totals[k]) for k in ("prompt_tokens", "completion_tokens", "replies")] + ["1"]
    )
    [by_key] = usage_of(server, auth, "key")["groups"]
    keys = chart_table(page, "Tokens by API key")
    expect(keys.get_by_role("rowheader")).to_have_text(["gateway"])
    assert by_key["total_tokens"] == totals["total_tokens"]
    expect(chart_table(page, "Tokens by agent").get_by_role("rowheader")).to_have_text(["No agent"])

    # A new reply is counted on the open page.
    post(server, key, conversation_id, 200, '!fake {"reply": "Done."}\nThanks')
    after = usage_of(server, auth, "model")["totals"]
    expect(tile).to_contain_text(f"{after['total_tokens']:,}", timeout=REFRESH)

    console_screenshots(page, artifacts, "dashboard-tokens")
