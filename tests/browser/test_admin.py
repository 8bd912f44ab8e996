"""The admin page: users promoted and disabled, the audit trail of every key, and a
non-admin refused by the page and by the API."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.harness import SYSTEM_KEY, Person, Server, register, serve
from tests.browser.ui import console_screenshots, sign_in

PAGE = 50  # rows the admin page asks for at a time


@pytest.fixture(scope="module")
def admin_server(
    browser_type_launch_args: dict[str, Any], fake_llm_url: str, workdir: Path
) -> Iterator[Server]:
    """A server of its own: the first account registered on it is the admin."""
    yield from serve(workdir / "admin", fake_llm_url)


@pytest.fixture(scope="module")
def admin(admin_server: Server) -> Person:
    return register(admin_server, name="Ada Admin")


def token_of(http: httpx.Client, person: Person) -> dict[str, str]:
    login = http.post("/api/auth/login", json={"email": person.email, "password": person.password})
    assert login.status_code == 200, login.text
    return {"authorization": f"Bearer {login.json()['access_token']}"}


def open_admin(page: Page) -> None:
    page.get_by_role("link", name="Admin", exact=True).click()
    expect(page.get_by_role("heading", name="Users", level=2)).to_be_visible()


def confirm(page: Page, button: str) -> None:
    page.get_by_role("dialog").get_by_role("button", name=button).click()


def test_an_admin_promotes_one_user_and_disables_another_who_then_cannot_sign_in(
    page: Page, browser: Browser, admin_server: Server, admin: Person
) -> None:
    server = admin_server
    bob = register(server, name="Bob Promoted")
    carol = register(server, name="Carol Disabled")
    with server.api() as http:
        assert http.patch(
            "/api/user", headers=token_of(http, carol), json={"phone_number": "+14155552671"}
        ).is_success
    sign_in(page, server, admin)
    open_admin(page)
    users = page.get_by_role("table").first
    expect(users.get_by_role("row").filter(has_text=admin.email)).to_contain_text("(you)")

    page.get_by_role("searchbox", name="Search users").fill(bob.email)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(users.get_by_role("row")).to_have_count(2)  # the header and Bob
    bob_row = users.get_by_role("row").filter(has_text=bob.email)
    bob_row.get_by_role("button", name="Make admin").click()
    confirm(page, "Cancel")
    expect(bob_row.get_by_role("button", name="Make admin")).to_be_visible()
    bob_row.get_by_role("button", name="Make admin").click()
    confirm(page, "Make admin")
    expect(
        page.get_by_role("status").filter(has_text="Bob Promoted is now an admin")
    ).to_be_visible()
    expect(bob_row.get_by_role("button", name="Make user")).to_be_focused()
    with server.api() as http:
        assert http.get("/api/user", headers=token_of(http, bob)).json()["role"] == "admin"

    page.get_by_role("searchbox", name="Search users").fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    carol_row = users.get_by_role("row").filter(has_text=carol.email)
    expect(carol_row).to_contain_text("+14155552671")
    expect(carol_row).to_contain_text("active")
    carol_row.get_by_role("button", name="Disable").click()
    confirm(page, "Disable")
    expect(carol_row).to_contain_text("disabled")
    expect(carol_row.get_by_role("button", name="Enable")).to_be_visible()

    carols = browser.new_context()
    try:
        refused = carols.new_page()
        refused.goto(f"{server.url}/")
        refused.get_by_label("Email").fill(carol.email)
        refused.get_by_label("Password").fill(carol.password)
        refused.get_by_role("button", name="Sign in").click()
        expect(refused.get_by_role("alert").filter(has_text="disabled")).to_be_visible()
        expect(refused.get_by_role("button", name="New chat")).to_be_hidden()
    finally:
        carols.close()


def test_the_audit_trail_of_every_key_is_filtered_and_paged(
    page: Page, admin_server: Server, admin: Person, artifacts: Path
) -> None:
    server = admin_server
    with server.api() as http:
        auth = token_of(http, admin)
        made = http.post(
            "/api/convos",
            headers=auth,
            json={"conversation_id": "audit-thread", "title": "Audit thread"},
        )
        assert made.status_code == 201, made.text
        for n in range(PAGE + 1):
            server.post_external("audit-thread", f"message {n}")
        bad = http.post(
            "/api/messages/audit-thread",
            headers={"x-api-key": "not-a-key-of-this-server"},
            json={"role": "external", "content": "let me in"},
        )
        assert bad.status_code == 403, bad.text
        # Audit rows are written just after the answers: wait until all of them are.
        deadline = time.monotonic() + 15
        while len(audit_rows(http, auth)) < PAGE + 2:
            assert time.monotonic() < deadline, "the audit rows were not written"
            time.sleep(0.1)
        system_key = audit_rows(http, auth, outcome="accepted")[0]["api_key_id"]
    sign_in(page, server, admin)
    open_admin(page)
    audit = page.get_by_role("region", name="Audit trail of every key")
    rows = audit.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(PAGE + 1)  # a page, and the header
    audit.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(PAGE + 3)
    expect(audit.get_by_role("button", name="Load more")).to_be_hidden()

    audit.get_by_label("Outcome").select_option("refused")
    audit.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("403")
    expect(rows.nth(1)).to_contain_text("refused")

    audit.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(PAGE + 1)
    console_screenshots(page, artifacts, "admin")
    audit.get_by_role("button", name=system_key).first.click()
    expect(audit.get_by_label("Key id")).to_have_value(system_key)
    expect(rows.filter(has_text="refused")).to_have_count(0)
    expect(rows).to_have_count(PAGE + 1)

    audit.get_by_label("From").fill("2030-01-02T00:00")
    audit.get_by_label("Until").fill("2030-01-01T00:00")
    audit.get_by_role("button", name="Filter").click()
    expect(audit.get_by_label("Until")).to_have_attribute("aria-invalid", "true")
    audit.get_by_label("From").fill("")
    audit.get_by_label("Until").fill("2020-01-01T00:00")
    audit.get_by_role("button", name="Filter").click()
    expect(audit.get_by_text("No request matches.")).to_be_visible()


def audit_rows(http: httpx.Client, auth: dict[str, str], **filters: str) -> list[dict[str, Any]]:
    answer = http.get("/api/admin/audit", headers=auth, params={"limit": 200, **filters})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["events"]
    return rows


def test_a_non_admin_opening_admin_is_refused_by_the_page_and_by_the_api(
    page: Page, admin_server: Server, admin: Person
) -> None:
    server = admin_server
    someone = register(server, name="Sam User")
    sign_in(page, server, someone)
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_hidden()
    with page.expect_response(lambda r: "/api/admin/users" in r.url) as answered:
        page.goto(f"{server.url}/admin")
    assert answered.value.status == 403
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("not an admin")
    expect(page.get_by_role("table")).to_have_count(0)
    with server.api() as http:
        auth = token_of(http, someone)
        for path in ("/api/admin/users", "/api/admin/audit"):
            refused = http.get(path, headers=auth)
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "admin_required"
        changed = http.patch(
            f"/api/admin/users/{someone_id(http, auth)}", headers=auth, json={"role": "admin"}
        )
        assert changed.status_code == 403, changed.text
        assert http.get("/api/user", headers=auth).json()["role"] == "user"


def someone_id(http: httpx.Client, auth: dict[str, str]) -> str:
    me: str = http.get("/api/user", headers=auth).json()["id"]
    return me


def test_an_admin_sees_the_environments_key_and_its_requests(
    page: Page, admin_server: Server, admin: Person, artifacts: Path
) -> None:
    """The keys page lists the system key the environment sets, by its audit reference and
    never the key; its page shows that key's requests from the whole audit trail."""
    server = admin_server
    ref = "env:" + hashlib.sha256(SYSTEM_KEY.encode()).hexdigest()[:8]
    conversation = f"env-key-{time.monotonic_ns()}"
    with server.api() as http:
        made = http.post(
            "/api/convos",
            headers=token_of(http, admin),
            json={"conversation_id": conversation, "endpoint": "fake", "title": "Front desk"},
        )
        assert made.status_code == 201, made.text
        posted = http.post(
            f"/api/messages/{conversation}",
            headers={"x-api-key": SYSTEM_KEY},
            json={"role": "external", "content": "Parcel for Ada", "respond": False},
        )
        assert posted.status_code == 201, posted.text

    sign_in(page, server, admin)
    page.get_by_role("link", name="API keys").click()
    environment = page.get_by_role("region", name="Keys from the environment")
    row = environment.get_by_role("row").filter(has_text=ref)
    expect(row).to_contain_text("EXTERNAL_MESSAGE_API_KEY")
    expect(row).to_contain_text("active")
    expect(row).not_to_contain_text("never")  # used a moment ago
    assert SYSTEM_KEY not in page.content()
    console_screenshots(page, artifacts, "keys-environment")

    row.get_by_role("link", name=ref).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"API key: {ref}")
    expect(page.get_by_text("remove it from EXTERNAL_MESSAGE_API_KEY and restart")).to_be_visible()
    trail = page.get_by_role("region", name="Audit trail")
    request = trail.get_by_role("row").filter(has_text=conversation)
    expect(request).to_contain_text("accepted")
    expect(request).to_contain_text("201")
    console_screenshots(page, artifacts, "keys-environment-key")
    trail.get_by_label("Outcome").select_option("refused")
    trail.get_by_role("button", name="Apply").click()
    expect(trail.get_by_text("No requests with this key match.")).to_be_visible()


def test_an_admin_who_demotes_themselves_loses_the_admin_link_at_once(
    page: Page, admin_server: Server, admin: Person
) -> None:
    server = admin_server
    dave = register(server, name="Dave Stepping Down")
    with server.api() as http:
        promoted = http.patch(
            f"/api/admin/users/{http.get('/api/user', headers=token_of(http, dave)).json()['id']}",
            headers=token_of(http, admin),
            json={"role": "admin"},
        )
        assert promoted.status_code == 200, promoted.text
    sign_in(page, server, dave)
    open_admin(page)
    page.get_by_role("searchbox", name="Search users").fill(dave.email)
    page.get_by_role("button", name="Search", exact=True).click()
    own = page.get_by_role("table").first.get_by_role("row").filter(has_text=dave.email)
    own.get_by_role("button", name="Make user").click()
    confirm(page, "Make user")
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_be_hidden()
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("region", name="Keys from the environment")).to_have_count(0)
