"""GET /api/search on both databases: what the index finds after every kind of write (posts,
external messages, edits, deletions, renamed and deleted conversations), only ever the
caller's, ranked, paged, with marked snippets; odd input answered cleanly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from relaychat.services import Services
from relaychat.storage.models import Message
from tests.support.factories import TestUser, make_conversation, make_user, post_message
from tests.support.settings import VERBATIM_KEY

SYSTEM = {"x-api-key": VERBATIM_KEY}


async def search(client: httpx.AsyncClient, user: TestUser, q: str, **params: Any) -> Any:
    response = await client.get("/api/search", params={"q": q, **params}, headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def found(client: httpx.AsyncClient, user: TestUser, q: str, **params: Any) -> list[Any]:
    """The message ids (or `title:<conversation>`) found for `q`, in rank order."""
    results = (await search(client, user, q, **params))["results"]
    return [r["message_id"] or f"title:{r['conversation_id']}" for r in results]


async def said(client: httpx.AsyncClient, user: TestUser, cid: str, text: str) -> str:
    message = await post_message(client, user, cid, content=text, respond=False)
    return str(message["message_id"])


async def test_words_phrases_prefixes_and_exclusions(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    deploy = await said(client, user, cid, "We deploy the staging server on Friday")
    deployed = await said(client, user, cid, "Deployment of production went fine")
    other = await said(client, user, cid, "Friday the server staging was quiet")

    assert set(await found(client, user, "server friday")) == {deploy, other}
    assert await found(client, user, '"staging server"') == [deploy]
    assert set(await found(client, user, "deploy*")) == {deploy, deployed}
    assert await found(client, user, "deploy") == [deploy]
    assert await found(client, user, "server -deploy") == [other]
    assert await found(client, user, 'friday -"staging server"') == [other]
    # Case and accents fold.
    assert await found(client, user, "PRODUCTIÓN") == [deployed]


async def test_words_with_quotes_and_symbols_are_indexed(client: httpx.AsyncClient) -> None:
    # PostgreSQL's parser keeps a URL's path, quotes and all, as one lexeme: the owner's
    # token goes in front of it through tsvector's quoted text form (migration 0013).
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="it's O'Brien's"))["conversation_id"]
    url = await said(client, user, cid, "see https://example.com/it's-'here' or a\\b now")
    assert await found(client, user, "see") == [url]
    assert await found(client, user, "now -brien") == [url]
    assert await found(client, user, "brien") == [f"title:{cid}"]


async def test_snippets_mark_the_words_as_data(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Ops"))["conversation_id"]
    long_start = "filler " * 40
    await said(client, user, cid, f"{long_start}the <b>deploy</b> of deployments & more")
    [hit] = (await search(client, user, "deploy*"))["results"]
    assert hit["conversation_title"] == "Ops"
    assert hit["role"] == "user"
    marked = [s["text"] for s in hit["snippet"] if s["match"]]
    assert marked == ["deploy", "deployments"]
    joined = "".join(s["text"] for s in hit["snippet"])
    assert joined.startswith("…") and "<b>deploy</b> of deployments & more" in joined
    assert len(joined) < len(long_start)


async def test_ranking_puts_the_denser_match_first(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    weak = await said(client, user, cid, "invoice " + "and some other words here " * 20)
    strong = await said(client, user, cid, "invoice invoice invoice overdue")
    assert await found(client, user, "invoice") == [strong, weak]


async def test_titles_are_found_and_follow_renames(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Quarterly budget"))["conversation_id"]
    assert await found(client, user, "budget") == [f"title:{cid}"]
    renamed = await client.patch(
        f"/api/convos/{cid}", json={"title": "Holiday plans"}, headers=user.headers
    )
    assert renamed.status_code == 200
    assert await found(client, user, "budget") == []
    assert await found(client, user, "holiday") == [f"title:{cid}"]
    await client.patch(f"/api/convos/{cid}", json={"title": None}, headers=user.headers)
    assert await found(client, user, "holiday") == []


async def test_edits_and_deletions_keep_the_index_right(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, title="Kept"))["conversation_id"]
    edited = await said(client, user, cid, "the original wording")
    gone = await said(client, user, cid, "this message will vanish")
    async with services.sessionmaker() as session:
        await session.execute(
            update(Message).where(Message.id == edited).values(text="the revised wording")
        )
        await session.execute(delete(Message).where(Message.id == gone))
        await session.commit()
    assert await found(client, user, "original") == []
    assert await found(client, user, "revised") == [edited]
    assert await found(client, user, "vanish") == []
    assert await found(client, user, "wording") == [edited]

    other = (await make_conversation(client, user, title="Doomed"))["conversation_id"]
    await said(client, user, other, "wording in a doomed conversation")
    assert len(await found(client, user, "wording")) == 2
    deleted = await client.delete(f"/api/convos/{other}", headers=user.headers)
    assert deleted.status_code == 204
    assert await found(client, user, "wording") == [edited]
    assert await found(client, user, "doomed") == []


async def test_a_rolled_back_write_leaves_nothing_in_the_index(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    kept = await said(client, user, cid, "stable text")
    async with services.sessionmaker() as session:
        await session.execute(update(Message).where(Message.id == kept).values(text="ephemeral"))
        await session.rollback()
    assert await found(client, user, "ephemeral") == []
    assert await found(client, user, "stable") == [kept]


async def test_another_users_messages_are_never_found(client: httpx.AsyncClient) -> None:
    alice, bob = await make_user(client), await make_user(client)
    a_cid = (await make_conversation(client, alice, title="secret plans"))["conversation_id"]
    await said(client, alice, a_cid, "the secret is pineapple")
    b_cid = (await make_conversation(client, bob))["conversation_id"]
    mine = await said(client, bob, b_cid, "no secret here")
    assert await found(client, bob, "secret") == [mine]
    assert await found(client, bob, "pineapple") == []
    # A prefix reads the caller's own words only (PostgreSQL: their token's key range).
    assert await found(client, bob, "pine*") == []
    assert await found(client, bob, "secr*") == [mine]
    # Naming Alice's conversation finds nothing either.
    assert await found(client, bob, "secret", conversation_id=a_cid) == []


async def test_external_messages_are_found_by_source_and_phone(
    client: httpx.AsyncClient,
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    response = await client.post(
        f"/api/messages/{cid}",
        json={
            "role": "external",
            "content": "Running late, sorry",
            "metadata": {"source": "twilio-sms", "phoneNumber": "+14155552671"},
            "respond": False,
        },
        headers=SYSTEM,
    )
    assert response.status_code == 201, response.text
    message_id = response.json()["message"]["message_id"]
    for q in ["+14155552671", "+1 415 555 2671", "+1 (415) 555", "4155552671", "twilio"]:
        assert await found(client, user, q) == [message_id], q
    [hit] = (await search(client, user, "+1 415"))["results"]
    assert hit["role"] == "external"
    assert [s["text"] for s in hit["snippet"] if s["match"]] == ["14155552671"]
    assert await found(client, user, "late", role="external") == [message_id]
    assert await found(client, user, "late", role="user") == []


async def test_filters_and_cursor_pages(client: httpx.AsyncClient) -> None:
    user = await make_user(client)
    first = (await make_conversation(client, user))["conversation_id"]
    second = (await make_conversation(client, user))["conversation_id"]
    ids = [await said(client, user, first, f"report number {n}") for n in range(5)]
    ids.append(await said(client, user, second, "report elsewhere"))
    assert set(await found(client, user, "report", conversation_id=second)) == {ids[-1]}

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await search(client, user, "report", **params)
        assert len(page["results"]) <= 2
        seen += [r["message_id"] for r in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)

    assert await found(client, user, "report", until="2000-01-01T00:00:00Z") == []
    assert set(await found(client, user, "report", since="2000-01-01T00:00:00Z")) == set(ids)


@pytest.mark.parametrize(
    "q",
    [
        '"unterminated phrase',
        "NEAR(a b)",
        "body: staging",
        "a OR b AND NOT c",
        "^start",
        "x" * 499,
        "'; DROP TABLE messages; --",
        "deploy* *",
        "{body sender}: x",
    ],
)
async def test_odd_input_is_just_text(client: httpx.AsyncClient, q: str) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user))["conversation_id"]
    await said(client, user, cid, "near the staging body of text")
    response = await client.get("/api/search", params={"q": q}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["results"], list)


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"q": "*"}, "search_query_empty", "q"),
        ({"q": "-"}, "search_query_empty", "q"),
        ({"q": '""'}, "search_query_empty", "q"),
        ({"q": '"'}, "search_query_empty", "q"),
        ({"q": "-only -excluded"}, "search_query_empty", "q"),
        ({"q": "x" * 501}, "validation_error", "q"),
        ({"q": ""}, "validation_error", "q"),
        ({}, "validation_error", "q"),
        ({"q": "a", "cursor": "not-a-cursor"}, "validation_error", "cursor"),
        ({"q": "a", "since": "2026-01-01T00:00:00"}, "validation_error", "since"),
        ({"q": "a", "role": "robot"}, "validation_error", "role"),
        ({"q": "a", "limit": 0}, "validation_error", "limit"),
    ],
)
async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, Any], code: str, field: str
) -> None:
    user = await make_user(client)
    response = await client.get("/api/search", params=params, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["code"], body["field"]) == (code, field)


async def test_search_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/search", params={"q": "x"})
    assert response.status_code == 401
