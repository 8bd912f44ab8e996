"""Conversation ids: one rule on every path that creates one, and by-sender threads that
no one can take from the user they are meant for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import update

from relaychat.services import Services
from relaychat.storage.models import Conversation
from tests.support.backends import Backend, row_counts
from tests.support.factories import TestUser, make_conversation, make_key, make_sessionless_user
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}
VICTIM_PHONE = "+14155552672"
THREAD = f"sms-{VICTIM_PHONE}"
BANK_CODE = {
    "content": "Your bank code is 123456",
    "metadata": {"source": "sms", "phoneNumber": VICTIM_PHONE},
    "respond": False,
}


def without_audit(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k != "audit_events"}


async def with_phone(client: httpx.AsyncClient, phone: str) -> TestUser:
    user = await make_sessionless_user(client)
    patched = await client.patch("/api/user", json={"phone_number": phone}, headers=user.headers)
    assert patched.status_code == 200, patched.text
    return user


def answer(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["detail"]


async def test_no_one_can_create_a_thread_meant_for_another_user(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    victim = await with_phone(client, VICTIM_PHONE)
    intruder = await make_sessionless_user(client)
    intruder_key = await make_key(client, intruder, can_create_conversations=True)
    before = await row_counts(clean_backend)

    # The attack of the issue, and its variants: none may take the victim's thread, and the
    # answer is the same for a number nobody has (nothing says whose number it is).
    attempts: dict[str, Callable[[str], Awaitable[httpx.Response]]] = {
        "api": lambda cid: client.post(
            "/api/convos", json={"conversation_id": cid}, headers=intruder.headers
        ),
        "users key": lambda cid: client.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "x", "respond": False},
            headers=intruder_key.headers,
        ),
        "channel form": lambda cid: client.post(
            "/api/convos", json={"conversation_id": f"{cid}.0123456789ab"}, headers=intruder.headers
        ),
    }
    for name, attempt in attempts.items():
        taken = await attempt(THREAD)
        nobodys = await attempt("sms-+14155550000")
        assert taken.status_code == 403, (name, taken.text)
        assert taken.json()["code"] == "conversation_id_reserved"
        assert answer(taken) == answer(nobodys), name
    assert without_audit(await row_counts(clean_backend)) == without_audit(before)

    # The system key's message lands with the victim, in a thread the intruder cannot see.
    delivered = await client.post("/api/external/messages", json=BANK_CODE, headers=SYSTEM)
    assert delivered.status_code == 201, delivered.text
    assert delivered.json()["conversation_id"] == THREAD
    assert (await client.get(f"/api/convos/{THREAD}", headers=victim.headers)).status_code == 200
    assert (await client.get(f"/api/convos/{THREAD}", headers=intruder.headers)).status_code == 404
    # Once it exists, the intruder's answer is still the same: it says nothing about it.
    again = await attempts["api"](THREAD)
    assert answer(again) == answer(await attempts["api"]("sms-+14155550000"))


async def test_a_thread_held_by_someone_else_receives_nothing(
    client: httpx.AsyncClient, clean_backend: Backend, services: Services
) -> None:
    victim = await with_phone(client, VICTIM_PHONE)
    intruder = await make_sessionless_user(client)
    # A thread held from before the rule (no request can make one now).
    legacy = await make_conversation(client, intruder)
    async with services.sessionmaker() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == legacy["conversation_id"])
            .values(id=THREAD)
        )
        await session.commit()
    before = await row_counts(clean_backend)
    by_sender = await client.post("/api/external/messages", json=BANK_CODE, headers=SYSTEM)
    by_id = await client.post(
        f"/api/messages/{THREAD}", json={"role": "external", **BANK_CODE}, headers=SYSTEM
    )
    for refused in (by_sender, by_id):
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "conversation_thread_taken"
        assert intruder.id not in refused.text and intruder.email not in refused.text
        assert victim.id not in refused.text and victim.email not in refused.text
    assert without_audit(await row_counts(clean_backend)) == without_audit(before)


async def test_a_senders_thread_follows_whom_the_sender_names(
    client: httpx.AsyncClient, clean_backend: Backend
) -> None:
    ann, bob = await make_sessionless_user(client), await make_sessionless_user(client)
    # No phone number: a thread by `metadata.sender`, owned by whom the message names.
    first = {"content": "hi", "metadata": {"source": "bot", "sender": "b7"}, "respond": False}
    created = await client.post(
        "/api/external/messages", json={**first, "user": ann.email}, headers=SYSTEM
    )
    assert created.status_code == 201, created.text
    assert created.json()["conversation_id"] == "bot-b7"
    again = await client.post(
        "/api/external/messages", json={**first, "user": ann.email}, headers=SYSTEM
    )
    assert again.status_code == 201, again.text
    before = await row_counts(clean_backend)
    # Bob's message from the same sender does not land in Ann's thread.
    for_bob = await client.post(
        "/api/external/messages", json={**first, "user": bob.email}, headers=SYSTEM
    )
    assert (for_bob.status_code, for_bob.json()["code"]) == (409, "conversation_thread_taken")
    assert without_audit(await row_counts(clean_backend)) == without_audit(before)


BAD_IDS = [
    "line\r\nbreak",
    "new\nline",
    "rtl\u202eevil",
    'quo"te',
    "it's",
    "has space",
    "ctl\x01char",
    "tab\tchar",
    "sms-\x00",
    "-leading-dash",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_one_conversation_id_rule_on_every_path(
    client: httpx.AsyncClient, clean_backend: Backend, bad_id: str
) -> None:
    user = await make_sessionless_user(client)
    key = await make_key(client, user, can_create_conversations=True)
    before = await row_counts(clean_backend)
    responses = [
        await client.post("/api/convos", json={"conversation_id": bad_id}, headers=user.headers),
        *[
            await client.post(
                f"/api/messages/{quote(bad_id, safe='')}",
                json={"role": "external", "content": "x", "respond": False},
                headers=headers,
            )
            for headers in (key.headers, SYSTEM)
        ],
    ]
    for response in responses:
        assert response.headers["content-type"].startswith("application/problem+json")
        if "\x00" in bad_id and "/api/messages/" in str(response.request.url):
            # No stored string may hold a NUL: the input guard refuses it in a path first,
            # as an id that cannot exist (http/middleware.py).
            assert response.status_code == 404, response.text
            continue
        assert response.status_code == 422, response.text
        expected = "validation_error" if "\x00" in bad_id else "invalid_conversation_id"
        assert response.json()["code"] == expected
        assert response.json()["field"] == "conversation_id"
    assert without_audit(await row_counts(clean_backend)) == without_audit(before)


SOURCES: list[tuple[dict[str, Any], str]] = [
    ({"source": "s" * 201, "phoneNumber": VICTIM_PHONE}, "metadata.source"),
    ({"source": "x" * 101, "sender": "b7"}, "metadata.source"),
    ({"source": {"nested": 1}, "sender": "b7"}, "metadata.source"),
    ({"source": "bot", "sender": "b" * 200}, "metadata.sender"),
]


@pytest.mark.parametrize(("metadata", "field"), SOURCES)
async def test_threaded_source_and_sender_are_bounded(
    client: httpx.AsyncClient, clean_backend: Backend, metadata: dict[str, Any], field: str
) -> None:
    owner = await with_phone(client, VICTIM_PHONE)
    cid = (await make_conversation(client, owner))["conversation_id"]
    before = await row_counts(clean_backend)
    threaded = await client.post(
        "/api/external/messages",
        json={"content": "x", "metadata": metadata, "user": owner.email, "respond": False},
        headers=SYSTEM,
    )
    assert (threaded.status_code, threaded.json()["field"]) == (422, field), threaded.text
    if field == "metadata.source":  # it labels every message, not only threads
        by_id = await client.post(
            f"/api/messages/{cid}",
            json={"role": "external", "content": "x", "metadata": metadata, "respond": False},
            headers=SYSTEM,
        )
        assert (by_id.status_code, by_id.json()["field"]) == (422, field), by_id.text
    assert without_audit(await row_counts(clean_backend)) == without_audit(before)
