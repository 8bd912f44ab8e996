"""Request ids: every answer carries one (a trusted proxy's, or a new one), every problem names
it, and the request's log lines carry it with the route's template and who was calling."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from relaychat.app import create_app
from relaychat.logs import ContextFilter, JsonFormatter, TextFormatter
from relaychat.services import Services
from tests.support.factories import make_conversation, make_user
from tests.support.settings import VERBATIM_KEY


def watch(caplog: pytest.LogCaptureFixture) -> None:
    """Capture from here on, with the request's context put on each record as the server's
    handler does (caplog's handler is the test phase's own, so this runs in the test)."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


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
