"""Request ids: every answer carries one (a trusted proxy's, or a new one), every problem names
it, the request's log lines carry it with the route's template and who was calling, and the
rows of the work it caused (audit, generation, callbacks) keep it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from relaychat.app import create_app
from relaychat.devtools.fake_llm import FakeLLM
from relaychat.logs import JsonFormatter, TextFormatter
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.chat import wait_generation
from tests.support.factories import make_conversation, make_user
from tests.support.log_capture import lines, watch
from tests.support.settings import VERBATIM_KEY, webhook_settings
from tests.support.webhooks import Receiver, register


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    """Callbacks to a receiver on loopback allowed: the id is followed into them."""
    return webhook_settings(backend, tmp_path, fake_llm)


async def test_every_answer_has_an_id_and_a_problem_names_it(client: httpx.AsyncClient) -> None:
    refused = await client.get("/api/convos")
    healthy = await client.get("/healthz")
    again = await client.get("/api/convos")
    ids = [r.headers["x-request-id"] for r in (refused, healthy, again)]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert refused.json()["request_id"] == ids[0]
    assert again.json()["request_id"] == ids[2]


async def test_only_a_trusted_proxy_names_the_request(services: Services) -> None:
    app = create_app(services=services)
    # 127.0.0.1 is in FORWARDED_ALLOW_IPS by default (as for uvicorn); 203.0.113.7 is not.
    for client, trusted in ((("127.0.0.1", 5000), True), (("203.0.113.7", 5000), False)):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
            named = await http.get("/api/convos", headers={"x-request-id": "lb-7f3a.42"})
            mangled = await http.get("/api/convos", headers={"x-request-id": 'a b"\n'})
        assert (named.headers["x-request-id"] == "lb-7f3a.42") is trusted
        assert (named.json()["request_id"] == "lb-7f3a.42") is trusted
        # A proxy's id that would break a log line is replaced, trusted or not.
        assert len(mangled.headers["x-request-id"]) == 32


async def test_the_access_line_names_the_template_and_the_caller(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    watch(caplog)
    read = await client.get(f"/api/convos/{cid}", headers=user.headers)
    posted = await client.post(
        "/api/messages/sms-+14155550100",
        json={"role": "external", "content": "hi", "respond": False, "user": user.id},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert read.status_code == 200 and posted.status_code in (200, 201), posted.text
    first, second = lines(caplog, "relaychat.access")
    assert first.getMessage().startswith("GET /api/convos/{conversation_id} 200 ")
    assert (first.path, first.status) == ("/api/convos/{conversation_id}", 200)  # type: ignore[attr-defined]
    assert first.request_id == read.headers["x-request-id"]  # type: ignore[attr-defined]
    assert first.user_id == user.id  # type: ignore[attr-defined]
    # The gateway answers before routing; its line still has the template, never the number.
    assert second.path == "/api/messages/{conversation_id}"  # type: ignore[attr-defined]
    assert "+14155550100" not in second.getMessage()
    assert second.key_id is not None  # type: ignore[attr-defined]
    assert second.conversation_id == "sms-+14155550100"  # type: ignore[attr-defined]


async def test_a_refused_external_message_is_logged_with_its_reason(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    watch(caplog)
    refused = await client.post(
        "/api/messages/sms-+14155550100",
        json={"role": "external", "content": "hi"},
        headers={"x-api-key": "rck_notakey_notasecretatall"},
    )
    assert refused.status_code in (401, 403)
    (line,) = lines(caplog, "relaychat.gateway.external")
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"external message refused: {refused.json()['code']}"
    assert line.request_id == refused.headers["x-request-id"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_secrets_are_scrubbed_from_every_line(formatter: logging.Formatter) -> None:
    secrets = [
        "rck_abcd1234_0123456789abcdefghijklmnop",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "Bearer abcdefghijklmnopqrstuvwxyz012345",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "sk-proj-abcdefghijklmnop0123",
    ]
    record = logging.LogRecord(
        "relaychat.test", logging.WARNING, __file__, 1, "saw %s", (" ".join(secrets),), None
    )
    line = formatter.format(record)
    assert not [s for s in secrets if s in line or s.split()[-1] in line]
    if isinstance(formatter, JsonFormatter):
        assert json.loads(line)["message"].startswith("saw [redacted]")


async def test_the_audit_row_names_the_request(
    client: httpx.AsyncClient, services: Services
) -> None:
    """From a sender's answer to its audit row: both carry the request's id."""
    admin = await make_user(client)  # the first account is the admin
    refused = await client.post(
        "/api/messages/sms-+14155550100",
        json={"role": "external", "content": "hi"},
        headers={"x-api-key": "rck_notakey_notasecretatall"},
    )
    accepted = await client.post(
        "/api/messages/sms-+14155550100",
        json={"role": "external", "content": "hi", "respond": False, "user": admin.id},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert accepted.status_code == 201, accepted.text
    await services.audit.flush()
    listed = await client.get("/api/admin/audit", headers=admin.headers)
    by_request = {e["request_id"]: e for e in listed.json()["events"]}
    assert by_request[refused.headers["x-request-id"]]["outcome"] == "refused"
    row = by_request[accepted.headers["x-request-id"]]
    assert row["message_id"] == accepted.json()["message"]["message_id"]


async def test_the_request_id_follows_the_reply_and_the_callbacks(
    client: httpx.AsyncClient, services: Services, receiver: Receiver
) -> None:
    """One id from the sender's request to its audit row, its reply's generation and every
    callback it caused; and a message the group-commit writer stores (another task, serving
    many requests) keeps its own request's id on its audit row and its callback."""
    admin = await make_user(client)  # the first account is the admin
    # A machine sends no session cookie (one would take the message off the grouped path).
    client.cookies.clear()
    hook = await register(client, admin, receiver, events=["message.created", "message.completed"])
    cid = (await make_conversation(client, admin, endpoint="fake"))["conversation_id"]
    answered = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "hi"},
        # From 127.0.0.1, a trusted proxy: its id is kept.
        headers={"x-api-key": VERBATIM_KEY, "x-request-id": "lb-trail.1", "prefer": "wait=30"},
    )
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-request-id"] == "lb-trail.1"
    grouped = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "no answer needed", "respond": False},
        headers={"x-api-key": VERBATIM_KEY},
    )
    assert grouped.status_code == 201, grouped.text
    second_id = grouped.headers["x-request-id"]
    await receiver.wait_for(3)
    await services.audit.flush()

    generation = await client.get(
        f"/api/generations/{answered.json()['generation_id']}", headers=admin.headers
    )
    assert generation.json()["request_id"] == "lb-trail.1"
    assert answered.json()["generation"]["request_id"] == "lb-trail.1"
    audit = (await client.get("/api/admin/audit", headers=admin.headers)).json()["events"]
    assert {e["message_id"]: e["request_id"] for e in audit} == {
        answered.json()["message"]["message_id"]: "lb-trail.1",
        grouped.json()["message"]["message_id"]: second_id,
    }
    listed = await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin.headers)
    by_event = {
        (d["event_type"], json.loads(d["payload"])["data"]["message"]["text"]): d["request_id"]
        for d in listed.json()["deliveries"]
    }
    assert by_event == {
        ("message.created", "hi"): "lb-trail.1",
        ("message.completed", answered.json()["reply"]["text"]): "lb-trail.1",
        ("message.created", "no answer needed"): second_id,
    }


async def test_a_persons_message_names_its_request_on_the_reply(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The browser's path: a person's message starts a reply; the generation keeps the
    request's id and the request's access line names the generation."""
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake"))["conversation_id"]
    watch(caplog)
    posted = await client.post(f"/api/messages/{cid}", json={"text": "hi"}, headers=user.headers)
    assert posted.status_code == 202, posted.text
    generation_id = posted.json()["generation_id"]
    settled = await wait_generation(client, user, generation_id)
    assert settled["request_id"] == posted.headers["x-request-id"]
    access = next(
        r
        for r in lines(caplog, "relaychat.access")
        if r.request_id == posted.headers["x-request-id"]  # type: ignore[attr-defined]
    )
    assert access.generation_id == generation_id  # type: ignore[attr-defined]
