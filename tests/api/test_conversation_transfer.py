"""Export and import over the API on both databases: our JSON round trip loses nothing,
ChatGPT's and LibreChat's files read from hand-written fixtures, each conversation whole
or not at all, limits refused with problem+json, and only ever the caller's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaychat.app import create_app
from relaychat.domain.transfer import importing
from relaychat.services import Services
from relaychat.settings import Settings
from tests.support.backends import Backend
from tests.support.chat import agent_conversation, ask, calls, make_agent, messages_of, script
from tests.support.factories import (
    TestUser,
    make_conversation,
    make_key,
    make_user,
    post_message,
)
from tests.support.settings import VERBATIM_KEY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SYSTEM = {"x-api-key": VERBATIM_KEY}


async def upload(
    client: httpx.AsyncClient, user: TestUser, data: bytes | str, name: str = "export.json"
) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    return await client.post(
        "/api/convos/import",
        files={"file": (name, raw, "application/json")},
        headers=user.headers,
    )


async def imported(client: httpx.AsyncClient, user: TestUser, data: bytes | str) -> Any:
    response = await upload(client, user, data)
    assert response.status_code == 200, response.text
    return response.json()


async def export_one(
    client: httpx.AsyncClient, user: TestUser, cid: str, fmt: str = "json"
) -> httpx.Response:
    return await client.get(
        f"/api/convos/{cid}/export", params={"format": fmt}, headers=user.headers
    )


async def document(client: httpx.AsyncClient, user: TestUser, cid: str) -> Any:
    response = await export_one(client, user, cid)
    assert response.status_code == 200, response.text
    return response.json()


async def search_ids(client: httpx.AsyncClient, user: TestUser, q: str) -> list[str | None]:
    response = await client.get("/api/search", params={"q": q}, headers=user.headers)
    assert response.status_code == 200, response.text
    return [hit["message_id"] for hit in response.json()["results"]]


def tree(messages: list[dict[str, Any]], *leave_out: str) -> list[Any]:
    """The tree of messages with everything but their ids (the conversation's too) and the
    fields in `leave_out`, children in creation order: equal for two copies of one
    conversation whatever ids they were given."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for message in messages:
        children.setdefault(message["parent_message_id"], []).append(message)

    def node(message: dict[str, Any]) -> dict[str, Any]:
        kept = {
            k: v
            for k, v in message.items()
            if k not in {"message_id", "conversation_id", "parent_message_id", *leave_out}
        }
        under = sorted(children.get(message["message_id"], []), key=lambda m: m["created_at"])
        return {**kept, "children": [node(child) for child in under]}

    return [node(m) for m in sorted(children.get(None, []), key=lambda m: m["created_at"])]


async def rich_conversation(client: httpx.AsyncClient, user: TestUser) -> str:
    """A conversation with every kind of row: an agent's tool steps, external messages with
    metadata (one by a system key, one by the user's own key), and a fork (a second answer
    to the first message)."""
    _, cid = await agent_conversation(client, user, tools=["calculator"])
    await ask(client, user, cid, script(calls(("calculator", {"expression": "6 * 7"})), "42."))
    key = await make_key(client, user)
    own = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": "From my own key", "respond": False},
        headers=key.headers,
    )
    assert own.status_code == 201, own.text
    external = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": "Running late from the depot",
            "metadata": {"source": "twilio-sms", "phoneNumber": "+14155552671"},
            "respond": False,
        },
        headers=SYSTEM,
    )
    assert external.status_code == 201, external.text
    first = (await messages_of(client, user, cid))[0]
    await post_message(
        client,
        user,
        cid,
        content="a second thought",
        parent_message_id=first["message_id"],
        respond=False,
    )
    return cid


async def test_our_json_round_trip_loses_nothing(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    bob = await make_user(client)
    cid = await rich_conversation(client, alice)
    original = await document(client, alice, cid)
    assert original["format"] == "relaychat.conversation"
    roles = {m["role"] for m in original["messages"]}
    assert roles == {"user", "assistant", "external"}
    assert any(p["type"] == "tool_call" for m in original["messages"] for p in m["content"])

    # Into another user: every id is taken, so the copy gets new ones; the rest is the same.
    report = await imported(client, bob, json.dumps(original))
    assert report["format"] == "relaychat" and report["refused"] == []
    [done] = report["imported"]
    assert done["source_id"] == cid and done["renamed"] is True
    assert done["messages"] == len(original["messages"])
    copy = await document(client, bob, done["conversation_id"])
    assert tree(copy["messages"], "api_key_id") == tree(original["messages"], "api_key_id")
    # Alice's key is not Bob's to claim; a system key (`env:…`) is the instance's label.
    keys = [(m["text"], m["api_key_id"]) for m in copy["messages"] if m["api_key_id"]]
    assert [(text, key.startswith("env:")) for text, key in keys] == [
        ("Running late from the depot", True)
    ]
    assert {m["message_id"] for m in copy["messages"]}.isdisjoint(
        m["message_id"] for m in original["messages"]
    )
    same = ("title", "endpoint", "model", "model_parameters", "system_prompt", "created_at")
    assert {k: copy["conversation"][k] for k in same} == {
        k: original["conversation"][k] for k in same
    }
    # Alice's agent is private: Bob's copy does not point at it.
    assert copy["conversation"]["agent_id"] is None
    # Bob's search finds the imported messages: the index took them in.
    [external] = [m for m in copy["messages"] if "depot" in m["text"]]
    assert await search_ids(client, bob, "depot") == [external["message_id"]]

    # Back where the ids are free again: everything, ids included, as it was.
    deleted = await client.delete(f"/api/convos/{cid}", headers=alice.headers)
    assert deleted.status_code == 204
    again = (await imported(client, alice, json.dumps(original)))["imported"]
    assert [(d["conversation_id"], d["renamed"]) for d in again] == [(cid, False)]
    restored = await document(client, alice, cid)
    assert restored["messages"] == original["messages"]
    # Only the unread count starts again from zero: Alice has just brought these in.
    for doc in (restored, original):
        del doc["exported_at"], doc["conversation"]["unseen_external"]
    assert restored == original


async def test_markdown_is_the_visible_branch(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Depot plans"))["conversation_id"]
    first = await post_message(client, user, cid, content="Where is the van?", respond=False)
    await post_message(client, user, cid, content="old branch", respond=False)
    await post_message(
        client,
        user,
        cid,
        content="new **branch**",
        parent_message_id=first["message_id"],
        respond=False,
    )
    external = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": "At the depot",
            "metadata": {"source": "twilio-sms", "phoneNumber": "+14155552671"},
            "respond": False,
        },
        headers=SYSTEM,
    )
    assert external.status_code == 201

    response = await export_one(client, user, cid, "markdown")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="relaychat-{cid}.md"'
    text = response.text
    assert text.startswith("# Depot plans\n")
    assert "old branch" not in text
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    assert [h.split(" · ")[0] for h in headings] == [
        "### User",
        "### User",
        "### External (twilio-sms, +14155552671)",
    ]
    body = text.split(headings[1])[1]
    assert body.index("new **branch**") < body.index("At the depot")


async def test_chatgpt_export_from_its_fixture(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    data = (FIXTURES / "chatgpt" / "conversations.json").read_bytes()
    report = await imported(client, user, data)
    assert report["format"] == "chatgpt" and report["refused"] == []
    assert [(d["conversation_id"], d["title"], d["messages"]) for d in report["imported"]] == [
        ("6751b0f1-2c3d-8004-9e5f-a1b2c3d4e5f6", "Packing for Oslo", 7),
        ("6752c1a2-3d4e-8005-8f6a-b2c3d4e5f6a7", "Sourdough starter", 2),
    ]
    oslo = {
        m["message_id"][-4:]: m
        for m in await messages_of(client, user, "6751b0f1-2c3d-8004-9e5f-a1b2c3d4e5f6")
    }
    # The hidden system prompt and the empty browsing display are left out, their children
    # hung on the nearest kept ancestor; the regenerated answer stays a sibling.
    assert {
        k: (m["role"], m["parent_message_id"] and m["parent_message_id"][-4:])
        for k, m in oslo.items()
    } == {
        "0003": ("user", None),
        "0004": ("assistant", "0003"),
        "0005": ("assistant", "0003"),
        "0006": ("user", "0005"),
        "0007": ("assistant", "0006"),
        "0009": ("tool", "0007"),
        "000a": ("assistant", "0009"),
    }
    assert oslo["0006"]["text"] == "Is this jacket warm enough?"
    assert oslo["0006"]["metadata"] == {"imported_from": "chatgpt", "omitted_parts": 1}
    assert oslo["0007"]["text"] == '```\nsearch("Oslo December average temperature")\n```'
    assert oslo["0009"]["sender"] == "browser"
    assert (oslo["000a"]["model"], oslo["000a"]["finish_reason"]) == ("gpt-4o", "length")
    assert oslo["0003"]["created_at"] == "2024-12-02T09:00:10Z"
    convo = (
        await client.get("/api/convos/6751b0f1-2c3d-8004-9e5f-a1b2c3d4e5f6", headers=user.headers)
    ).json()
    assert convo["created_at"] == "2024-12-02T09:00:00.123456Z"
    sourdough = await messages_of(client, user, "6752c1a2-3d4e-8005-8f6a-b2c3d4e5f6a7")
    assert [m["status"] for m in sourdough] == ["complete", "unfinished"]
    assert await search_ids(client, user, "thermals") == [oslo["0005"]["message_id"]]

    # The same file again: nothing is overwritten, the copies get new ids.
    again = await imported(client, user, data)
    assert [d["renamed"] for d in again["imported"]] == [True, True]
    copy = await messages_of(client, user, again["imported"][0]["conversation_id"])
    assert {m["message_id"] for m in copy}.isdisjoint(m["message_id"] for m in oslo.values())
    assert len(await messages_of(client, user, "6751b0f1-2c3d-8004-9e5f-a1b2c3d4e5f6")) == 7


async def test_librechat_exports_from_their_fixtures(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    data = (FIXTURES / "librechat" / "export__recursive_branches.json").read_bytes()
    [done] = (await imported(client, user, data))["imported"]
    cid = done["conversation_id"]
    assert (cid, done["messages"]) == ("b7d2c9e4-1a5f-4e3b-9c8d-2f6a1b0e4d73", 5)
    convo = (await client.get(f"/api/convos/{cid}", headers=user.headers)).json()
    assert (convo["title"], convo["endpoint"], convo["model"]) == (
        "Renewing a passport",
        "openAI",
        "gpt-4o-mini",
    )
    assert convo["system_prompt"] == "Answer briefly."
    assert convo["model_parameters"] == {"temperature": 0.4, "top_p": 1}
    rows = {m["message_id"][-3:]: m for m in await messages_of(client, user, cid)}
    assert {
        k: (m["role"], m["parent_message_id"] and m["parent_message_id"][-3:])
        for k, m in rows.items()
    } == {
        "101": ("user", None),
        "102": ("assistant", "101"),
        "103": ("assistant", "101"),
        "104": ("user", "103"),
        "105": ("assistant", "104"),
    }
    assert rows["103"]["sender"] == "GPT-4o mini"
    assert (rows["105"]["status"], rows["105"]["error"]) == (
        "error",
        "Error: 429 Rate limit reached for gpt-4o-mini",
    )

    flat = (FIXTURES / "librechat" / "export__flat.json").read_bytes()
    [done] = (await imported(client, user, flat))["imported"]
    haiku = await messages_of(client, user, done["conversation_id"])
    assert [(m["role"], m["status"]) for m in haiku] == [
        ("user", "complete"),
        ("assistant", "unfinished"),
    ]
    assert haiku[1]["text"].startswith("Steam curls from the cup")
    assert haiku[1]["parent_message_id"] == haiku[0]["message_id"]


def own_document(cid: str, *texts: str, parent_of_last: str | None = None) -> dict[str, Any]:
    """A conversation in our format: a chain of user messages with these texts."""
    messages: list[dict[str, Any]] = []
    parent = None
    for index, text in enumerate(texts):
        mid = f"{cid}-m{index}"
        messages.append(
            {
                "message_id": mid,
                "conversation_id": cid,
                "parent_message_id": parent,
                "role": "user",
                "sender": None,
                "content": [{"type": "text", "text": text}],
                "text": text,
                "status": "complete",
                "error": None,
                "endpoint": None,
                "model": None,
                "finish_reason": None,
                "prompt_tokens": None,
                "completion_tokens": None,
                "metadata": {},
                "created_at": f"2026-01-01T00:00:0{index}Z",
            }
        )
        parent = mid
    if parent_of_last is not None:
        messages[-1]["parent_message_id"] = parent_of_last
    return {
        "format": "relaychat.conversation",
        "version": 1,
        "conversation": {
            "conversation_id": cid,
            "title": cid,
            "endpoint": None,
            "model": None,
            "agent_id": None,
            "model_parameters": {},
            "system_prompt": None,
            "archived": False,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        },
        "messages": messages,
    }


def bulk(*documents: dict[str, Any]) -> str:
    return json.dumps(
        {"format": "relaychat.export", "version": 1, "conversations": list(documents)}
    )


async def test_a_bad_conversation_is_refused_alone_and_leaves_nothing(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    bad = own_document("bad-one", "zebrafirst", "zebrasecond", parent_of_last="nowhere")
    report = await imported(
        client,
        user,
        bulk(own_document("good-one", "alpha"), bad, own_document("good-two", "beta")),
    )
    assert [d["conversation_id"] for d in report["imported"]] == ["good-one", "good-two"]
    [refused] = report["refused"]
    assert refused["index"] == 1 and refused["source_id"] == "bad-one"
    assert refused["code"] == "import_conversation_invalid"
    assert refused["field"] == "messages[1].parent_message_id"
    assert "nowhere" in refused["detail"]
    missing = await client.get("/api/convos/bad-one", headers=user.headers)
    assert missing.status_code == 404
    assert await search_ids(client, user, "zebrafirst") == []


async def test_a_write_failing_midway_rolls_the_conversation_back(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    existing = await post_message(client, user, cid, content="kept as it is", respond=False)

    # As if another writer took a message id between the check and the insert: the
    # conversation row is written first, then the messages' insert fails.
    async def clashing(session: Any, messages: list[Any]) -> dict[str, str]:
        return {m.id: existing["message_id"] for m in messages}

    monkeypatch.setattr(importing, "_message_ids", clashing)
    report = await imported(client, user, bulk(own_document("racing", "quokkaword")))
    assert report["imported"] == []
    assert [r["code"] for r in report["refused"]] == ["conversation_exists"]
    assert (await client.get("/api/convos/racing", headers=user.headers)).status_code == 404
    assert await search_ids(client, user, "quokkaword") == []
    [kept] = await messages_of(client, user, cid)
    assert kept["text"] == "kept as it is"


async def test_unreadable_files_are_422_and_write_nothing(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    for data, detail in (
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b'{"some": "thing"}', "no format relaychat imports"),
        (b"[]", "no format relaychat imports"),
        (b'{"format": "relaychat.conversation", "x": NaN}', "NaN is not a JSON value"),
    ):
        response = await upload(client, user, data)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "import_unreadable"
        assert detail in response.json()["detail"]
    no_file = await client.post("/api/convos/import", headers=user.headers)
    assert no_file.status_code == 422 and no_file.json()["code"] == "validation_error"
    listed = (await client.get("/api/convos", headers=user.headers)).json()
    assert listed["conversations"] == []


@pytest.fixture
async def limited(clean_backend: Backend, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with small limits: a 2 KiB body anywhere but an import's 8 KiB file, one
    conversation per file and two messages per conversation."""
    small = settings.model_copy(
        update={
            "max_body_bytes": 2048,
            "import_max_bytes": 8192,
            "import_max_conversations": 1,
            "import_max_messages": 2,
        }
    )
    services = Services.build(small, engine=clean_backend.engine)
    await services.start()
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
            yield http
    finally:
        await services.close()


async def test_limits_are_413_and_422(limited: httpx.AsyncClient) -> None:
    user = await make_user(limited)
    # Over MAX_BODY_BYTES but within the import's own limit: accepted.
    padded = own_document("padded", "x" * 3000)
    report = await imported(limited, user, json.dumps(padded))
    assert [d["conversation_id"] for d in report["imported"]] == ["padded"]
    # A file over the import's limit: the route refuses it, the body around it too.
    for size in (8193, 200_000):
        response = await upload(limited, user, json.dumps(own_document("big", "y" * size)))
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "payload_too_large"
        assert problem["limit"] in (8192, 8192 + 64 * 1024)
    # More conversations than one import takes: refused whole.
    two = bulk(own_document("one", "a"), own_document("two", "b"))
    response = await upload(limited, user, two)
    assert response.status_code == 422
    assert response.json()["code"] == "import_too_many_conversations"
    assert response.json()["limit"] == 1
    # More messages than a conversation may bring: that conversation refused.
    report = await imported(limited, user, json.dumps(own_document("long", "a", "b", "c")))
    assert report["imported"] == []
    assert [r["code"] for r in report["refused"]] == ["import_too_many_messages"]
    listed = (await limited.get("/api/convos", headers=user.headers)).json()
    assert [c["conversation_id"] for c in listed["conversations"]] == ["padded"]


async def test_only_your_own_conversations_are_exported(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    bob = await make_user(client)
    cid = (await make_conversation(client, alice, title="private"))["conversation_id"]
    for fmt in ("json", "markdown"):
        response = await export_one(client, bob, cid, fmt)
        assert response.status_code == 404
        assert response.json()["code"] == "conversation_not_found"
    everything = await client.get("/api/convos/export", headers=bob.headers)
    assert everything.status_code == 200
    assert everything.json()["conversations"] == []
    client.cookies.clear()
    anonymous = await client.get("/api/convos/export")
    assert anonymous.status_code == 401


async def test_export_all_is_one_importable_file(client: httpx.AsyncClient) -> None:
    alice = await make_user(client)
    bob = await make_user(client)
    cids = []
    for title in ("one", "two", "three"):
        cid = (await make_conversation(client, alice, title=title))["conversation_id"]
        await post_message(client, alice, cid, content=f"hello {title}", respond=False)
        cids.append(cid)
    archived = await client.patch(
        f"/api/convos/{cids[2]}", json={"archived": True}, headers=alice.headers
    )
    assert archived.status_code == 200

    response = await client.get("/api/convos/export", headers=alice.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "content-length" not in response.headers  # streamed: its length is not known first
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="relaychat-export-'
    )
    exported = response.json()
    assert (exported["format"], exported["version"]) == ("relaychat.export", 1)
    assert [d["conversation"]["conversation_id"] for d in exported["conversations"]] == cids
    assert exported["conversations"][2]["conversation"]["archived"] is True

    report = await imported(client, bob, response.content)
    assert [d["title"] for d in report["imported"]] == ["one", "two", "three"]
    assert all(d["renamed"] for d in report["imported"])


async def test_after_a_refusal_the_next_conversation_keeps_its_usable_agent(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    agent = await make_agent(client, user)
    bad = own_document("refused-first", "a", "b", parent_of_last="nowhere")
    good = own_document("with-agent", "hello")
    good["conversation"].update(endpoint="agents", agent_id=agent["agent_id"])
    report = await imported(client, user, bulk(bad, good))
    assert [r["source_id"] for r in report["refused"]] == ["refused-first"]
    assert [d["conversation_id"] for d in report["imported"]] == ["with-agent"]
    convo = (await client.get("/api/convos/with-agent", headers=user.headers)).json()
    assert convo["agent_id"] == agent["agent_id"]
