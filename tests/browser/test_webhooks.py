"""The Webhooks page: register an endpoint and take its secret once, watch a signed delivery
arrive at a real receiver and be redelivered, see why an endpoint was disabled, enable it,
edit and delete it; a refused field's error lands next to it."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from standardwebhooks import Webhook

from tests.browser.harness import Person, Server, register, serve
from tests.browser.ui import sign_in

TIMEOUT = 20_000


@dataclass
class Request:
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """A loopback HTTP server that records each POST and answers the scripted statuses
    first, then 200."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.requests.append(Request(headers, body))
            status = received.script.pop(0) if received.script else 200
            answer = b"ok" if status < 300 else b"no"
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test asserts on what arrived; stderr stays quiet

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{http.server_address[1]}/hook"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        http.shutdown()
        http.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def hook_server(
    browser_type_launch_args: dict[str, Any], fake_llm_url: str, workdir: Path
) -> Iterator[Server]:
    """A server that may call receivers on loopback (refused by default, as SSRF), and
    retries a failed delivery after 2 s."""
    yield from serve(
        workdir / "webhooks",
        fake_llm_url,
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        WEBHOOK_RETRY_SCHEDULE="0,2,2",
    )


@contextmanager
def api_client(server: Server, person: Person) -> Iterator[httpx.Client]:
    """The person's API session, as another program of theirs would hold it."""
    with server.api() as http:
        login = http.post(
            "/api/auth/login", json={"email": person.email, "password": person.password}
        )
        assert login.status_code == 200, login.text
        http.headers["authorization"] = f"Bearer {login.json()['access_token']}"
        yield http


def post_message(http: httpx.Client, conversation_id: str, text: str) -> None:
    sent = http.post(f"/api/messages/{conversation_id}", json={"text": text, "respond": False})
    assert sent.status_code == 201, sent.text


def conversation(http: httpx.Client) -> str:
    created = http.post("/api/convos", json={"title": "Webhook trials", "endpoint": "fake"})
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["conversation_id"]
    return conversation_id


def open_webhooks(page: Page) -> None:
    page.get_by_role("link", name="Webhooks", exact=True).click()
    expect(page.get_by_role("heading", name="Your webhooks")).to_be_visible()


def register_form(page: Page) -> Locator:
    return page.get_by_role("region", name="Register a webhook")


def error_next_to(control: Locator) -> Locator:
    """The alert inside the field that holds `control` (where bindForm puts it)."""
    return control.locator("xpath=ancestor::*[contains(@class, 'field')][1]").get_by_role("alert")


def confirm(page: Page, button: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button).click()
    expect(dialog).to_be_hidden()


def attempts_rows(detail: Locator) -> Locator:
    """The log's rows of attempts (not its header row)."""
    return (
        detail.get_by_role("table").get_by_role("row").filter(has=detail.page.get_by_role("cell"))
    )


def test_register_deliver_redeliver_disable_enable(
    page: Page, hook_server: Server, receiver: Receiver, artifacts: Path
) -> None:
    server = hook_server
    person = register(server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    with api_client(server, person) as http:
        conversation_id = conversation(http)
    sign_in(page, server, person)
    open_webhooks(page)
    expect(page.get_by_text("No webhooks yet")).to_be_visible()

    form = register_form(page)
    form.get_by_label("URL").fill(receiver.url)
    form.get_by_label("Description").fill("Our ticketing system")
    for event in ("message.created", "message.completed", "message.failed"):
        expect(form.get_by_role("checkbox", name=re.compile(re.escape(event)))).to_be_checked()
    form.get_by_role("checkbox", name=re.compile("conversation.created")).uncheck()
    form.get_by_role("button", name="Register webhook").click()

    # The secret, shown once: copied with the button, gone from the page once saved.
    secret_box = page.get_by_role("status").filter(has_text="Signing secret")
    expect(secret_box).to_contain_text("shown only this once")
    secret_box.get_by_role("button", name="Copy").click()
    expect(secret_box.get_by_role("button", name="Copied")).to_be_visible()
    secret: str = page.evaluate("navigator.clipboard.readText()")
    assert secret.startswith("whsec_")
    expect(secret_box).to_contain_text(secret)
    row = page.get_by_role("row").filter(has_text=receiver.url)
    expect(row).to_contain_text("Enabled")
    expect(row).to_contain_text("Our ticketing system")
    expect(row).not_to_contain_text("conversation.created")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=artifacts / "webhooks-list-1440.png")
    page.set_viewport_size({"width": 375, "height": 2000})
    page.screenshot(path=artifacts / "webhooks-list-375-tall.png")
    page.set_viewport_size({"width": 1280, "height": 860})
    secret_box.get_by_role("button", name="I have saved it").click()
    expect(secret_box).to_have_count(0)
    assert secret not in page.content()

    # An event: the delivery appears live on the endpoint's page (the event on the page's
    # stream is the cue); its first attempt fails, and the retry 2 s later, which no event
    # announces, is seen by following the pending delivery. Each request is signed.
    row.get_by_role("link", name=receiver.url).click()
    expect(page).to_have_url(re.compile(r"/webhooks/[0-9a-f-]{36}$"))
    deliveries = page.get_by_role("region", name="Deliveries")
    expect(deliveries).to_contain_text("No deliveries yet")
    receiver.script = [500]
    with api_client(server, person) as http:
        post_message(http, conversation_id, "Where is my parcel?")
    delivery = deliveries.get_by_role("row").filter(has_text="message.created")
    expect(delivery).to_contain_text("delivered", timeout=TIMEOUT)
    expect(delivery).to_contain_text("HTTP 200")
    assert len(receiver.requests) == 2
    first = receiver.requests[0]
    signed = Webhook(secret).verify(first.body, first.headers)
    assert signed["type"] == "message.created"
    assert signed["data"]["message"]["text"] == "Where is my parcel?"
    assert Webhook(secret).verify(receiver.requests[1].body, receiver.requests[1].headers)

    delivery.get_by_role("button", name=re.compile("Details")).click()
    detail = page.get_by_role("region", name=re.compile("^Delivery "))
    expect(detail.get_by_role("heading", level=2)).to_contain_text(first.headers["webhook-id"])
    expect(attempts_rows(detail)).to_have_count(2)
    expect(attempts_rows(detail).nth(0)).to_contain_text("HTTP 500")
    expect(attempts_rows(detail).nth(1)).to_contain_text("HTTP 200")
    expect(attempts_rows(detail).nth(1)).to_contain_text("ok")

    # Redeliver: the same webhook-id again, a third attempt in its log.
    detail.get_by_role("button", name="Redeliver").click()
    expect(attempts_rows(detail)).to_have_count(3, timeout=TIMEOUT)
    expect(detail).to_contain_text("delivered")
    assert len(receiver.requests) == 3
    again = receiver.requests[2]
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert Webhook(secret).verify(again.body, again.headers) == signed
    detail.get_by_text("Payload").click()
    expect(detail).to_contain_text("Where is my parcel?")
    for width, height in ((1440, 900), (375, 812)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=artifacts / f"webhooks-{width}.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "webhooks-375-dark.png")
    page.emulate_media(color_scheme="light")
    # The console scrolls inside the window: a tall window shows the whole page at once.
    page.set_viewport_size({"width": 375, "height": 2400})
    page.screenshot(path=artifacts / "webhooks-375-tall.png")
    page.set_viewport_size({"width": 1280, "height": 860})

    # Disabled by its owner, and why; enabled again.
    endpoint = page.get_by_role("region", name="Endpoint")
    endpoint.get_by_role("button", name="Disable").click()
    confirm(page, "Disable")
    expect(endpoint).to_contain_text("disabled by its owner")
    endpoint.get_by_role("button", name="Enable").click()
    expect(endpoint).to_contain_text("Enabled")
    expect(endpoint).not_to_contain_text("disabled by its owner")


def test_an_endpoint_disabled_by_410_says_why_and_is_enabled_again(
    page: Page, hook_server: Server, receiver: Receiver, artifacts: Path
) -> None:
    server = hook_server
    person = register(server)
    receiver.script = [410]
    with api_client(server, person) as http:
        conversation_id = conversation(http)
        created = http.post(
            "/api/webhooks", json={"url": receiver.url, "events": ["message.created"]}
        )
        assert created.status_code == 201, created.text
    sign_in(page, server, person)
    open_webhooks(page)
    page.get_by_role("link", name=receiver.url).click()
    endpoint = page.get_by_role("region", name="Endpoint")
    expect(endpoint).to_contain_text("Enabled")

    with api_client(server, person) as http:
        post_message(http, conversation_id, "anyone there?")
    # Seen live on the open page: the delivery failed and the endpoint says why it stopped.
    delivery = page.get_by_role("region", name="Deliveries").get_by_role("row").nth(1)
    expect(delivery).to_contain_text("failed", timeout=TIMEOUT)
    expect(delivery).to_contain_text("HTTP 410")
    expect(endpoint).to_contain_text("Disabled")
    expect(endpoint).to_contain_text("the receiver answered 410 Gone")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=artifacts / "webhooks-disabled-1440.png")
    page.set_viewport_size({"width": 1280, "height": 860})

    page.get_by_role("link", name="All webhooks").click()
    row = page.get_by_role("row").filter(has_text=receiver.url)
    expect(row).to_contain_text("410 Gone")
    row.get_by_role("button", name=re.compile("^Enable")).click()
    expect(row).to_contain_text("Enabled")
    expect(row).not_to_contain_text("410 Gone")

    # Edit its events; delete it after a cancelled first try.
    row.get_by_role("button", name=re.compile("^Edit")).click()
    editor = page.get_by_role("region", name="Edit webhook")
    editor.get_by_role("checkbox", name=re.compile("message.failed")).check()
    editor.get_by_role("button", name="Save changes").click()
    expect(editor).to_have_count(0)
    expect(row).to_contain_text("message.failed")
    row.get_by_role("button", name=re.compile("^Delete")).click()
    confirm(page, "Cancel")
    expect(row).to_be_visible()
    row.get_by_role("button", name=re.compile("^Delete")).click()
    confirm(page, "Delete")
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    with api_client(server, person) as http:
        assert http.get("/api/webhooks").json()["webhooks"] == []


def test_refused_fields_show_their_error_next_to_them(
    page: Page, hook_server: Server, artifacts: Path
) -> None:
    server = hook_server
    person = register(server)
    sign_in(page, server, person)
    open_webhooks(page)
    form = register_form(page)
    url = form.get_by_label("URL")
    url.fill("ftp://example.com/hook")
    form.get_by_role("button", name="Register webhook").click()
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(error_next_to(url)).to_contain_text("scheme must be http or https")
    expect(url).to_be_focused()
    page.set_viewport_size({"width": 375, "height": 812})
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=artifacts / "webhooks-form-error-375-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 860})

    url.fill("https://example.com/hook")
    for box in form.get_by_role("checkbox").all():
        box.uncheck()
    form.get_by_role("button", name="Register webhook").click()
    first_event = form.get_by_role("checkbox").first
    expect(first_event).to_have_attribute("aria-invalid", "true")
    expect(error_next_to(first_event)).to_be_visible()
    expect(error_next_to(url)).to_have_count(0)
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    with api_client(server, person) as http:
        assert http.get("/api/webhooks").json()["webhooks"] == []


def test_a_webhook_for_one_key_hears_only_what_that_key_caused(
    page: Page, hook_server: Server, receiver: Receiver
) -> None:
    server = hook_server
    person = register(server)
    with api_client(server, person) as http:
        conversation_id = conversation(http)
        made = http.post("/api/keys", json={"name": "SMS gateway"})
        assert made.status_code == 201, made.text
        key, key_secret = made.json()["key"], made.json()["secret"]
        old = http.post("/api/keys", json={"name": "Old bot"}).json()["key"]
        assert http.delete(f"/api/keys/{old['id']}").status_code == 204
    sign_in(page, server, person)
    open_webhooks(page)
    form = register_form(page)
    form.get_by_label("URL").fill(receiver.url)
    scope = form.get_by_label("Only events caused by")
    expect(scope.get_by_role("option", name=re.compile("Old bot"))).to_have_count(0)
    scope.select_option(label=f"Key SMS gateway ({key['prefix']}…)")
    form.get_by_role("button", name="Register webhook").click()
    row = page.get_by_role("row").filter(has_text=receiver.url)
    expect(row).to_contain_text("Key SMS gateway")

    with api_client(server, person) as http:
        post_message(http, conversation_id, "the person's own message")
        by_key = http.post(
            f"/api/messages/{conversation_id}",
            headers={"x-api-key": key_secret},
            json={"role": "external", "content": "sent by the gateway", "respond": False},
        )
        assert by_key.status_code == 201, by_key.text
    row.get_by_role("link", name=receiver.url).click()
    deliveries = page.get_by_role("region", name="Deliveries")
    expect(deliveries.get_by_role("row").nth(1)).to_contain_text("delivered", timeout=TIMEOUT)
    expect(deliveries.get_by_role("row")).to_have_count(2)  # the header and the key's one
    assert [r.body for r in receiver.requests if "sent by the gateway" in r.body]
    assert not [r.body for r in receiver.requests if "the person's own message" in r.body]

    # Twenty more: the list shows a page of 20, and the rest on demand.
    with server.api() as http:
        for n in range(20):
            more = http.post(
                f"/api/messages/{conversation_id}",
                headers={"x-api-key": key_secret},
                json={"role": "external", "content": f"batch {n}", "respond": False},
            )
            assert more.status_code == 201, more.text
    load_more = deliveries.get_by_role("button", name="Load more")
    expect(load_more).to_be_visible(timeout=TIMEOUT)
    expect(deliveries.get_by_role("row")).to_have_count(21)
    load_more.click()
    expect(deliveries.get_by_role("row")).to_have_count(22)
    expect(load_more).to_be_hidden()
