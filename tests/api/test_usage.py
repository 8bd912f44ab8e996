"""Token usage of replies: counted from the provider (or estimated, and marked so), summed
over an agent's model calls, stored per reply with its key, and reported by GET /api/usage."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import httpx
import pytest

from relaychat.devtools import fake_openai
from relaychat.devtools.fake_config import DEFAULT_REPLY, apply_directive, make_plan
from relaychat.devtools.fake_llm import FakeLLM
from tests.support.chat import agent_conversation, ask, calls, messages_of, script, wait_generation
from tests.support.factories import (
    TestUser,
    make_conversation,
    make_key,
    make_sessionless_user,
    make_user,
)

_markers = itertools.count()


@pytest.fixture
def marker() -> str:
    """Text unique to this test, to find its requests at the shared fake upstream."""
    return f"u{next(_markers)}x"


def reported(fake_llm: FakeLLM, marker: str) -> tuple[int, int, int]:
    """How many reply requests carried `marker`, and the tokens the fake reported for them
    (worked out as the fake works them out: titles, asked of the mini model, left out)."""
    requests = prompt = completion = 0
    for request in fake_llm.requests:
        body = request.body
        if marker not in json.dumps(body) or body.get("model") == "fake-model-mini":
            continue
        found, overrides = fake_openai.read_input(body, str(body["model"]))
        plan = make_plan(apply_directive(fake_llm.state.config, overrides), found)
        requests, prompt, completion = (
            requests + 1,
            prompt + plan.prompt_tokens,
            completion + plan.completion_tokens,
        )
    return requests, prompt, completion


async def usage(client: httpx.AsyncClient, user: TestUser, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/usage{query}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def group(report: dict[str, Any], key: str | None) -> dict[str, Any]:
    found: list[dict[str, Any]] = [g for g in report["groups"] if g["key"] == key]
    assert len(found) == 1, report
    return found[0]


async def test_a_reply_counts_the_providers_tokens(
    client: httpx.AsyncClient, fake_llm: FakeLLM, marker: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake", model="fake-model", title="t"))[
        "conversation_id"
    ]
    await ask(client, user, cid, f"hello {marker}")

    reply = (await messages_of(client, user, cid))[-1]
    _, prompt, completion = reported(fake_llm, marker)
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (prompt, completion)
    assert reply["tokens_estimated"] is False
    report = await usage(client, user, "?group_by=model")
    assert report["scope"] == "own"
    assert report["groups"] == [
        {
            "key": "fake/fake-model",
            "replies": 1,
            "estimated_replies": 0,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    ]
    assert report["totals"] == {k: v for k, v in report["groups"][0].items() if k != "key"}


async def test_without_the_providers_counts_they_are_estimated_and_marked(
    client: httpx.AsyncClient, fake_llm: FakeLLM, marker: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake", title="t"))["conversation_id"]
    await ask(client, user, cid, f'!fake {{"usage": false}}\nhello {marker}')

    reply = (await messages_of(client, user, cid))[-1]
    [sent] = [r.body for r in fake_llm.requests if marker in json.dumps(r.body)]
    # One token per 4 characters, rounded up; 3 per message for its framing.
    prompt = sum(3 + math.ceil(len(m["content"]) / 4) for m in sent["messages"])
    assert reply["tokens_estimated"] is True
    assert reply["completion_tokens"] == math.ceil(len(DEFAULT_REPLY) / 4)
    assert reply["prompt_tokens"] == prompt
    day = (await usage(client, user))["groups"]
    assert [(g["replies"], g["estimated_replies"]) for g in day] == [(1, 1)]
    assert day[0]["total_tokens"] == prompt + reply["completion_tokens"]


async def test_an_agents_model_calls_are_summed(
    client: httpx.AsyncClient, fake_llm: FakeLLM, marker: str
) -> None:
    user = await make_user(client)
    agent_id, cid = await agent_conversation(client, user, tools=["calculator"])
    text = script(calls(("calculator", {"expression": "6 * 7"})), "It is 42.")
    await ask(client, user, cid, f"{text}\nwhat is 6*7? {marker}")

    requests, prompt, completion = reported(fake_llm, marker)
    assert requests == 2, "a tool call and the answer after it"
    reply = (await messages_of(client, user, cid))[-1]
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (prompt, completion)
    by_agent = group(await usage(client, user, "?group_by=agent"), agent_id)
    assert (by_agent["replies"], by_agent["total_tokens"]) == (1, prompt + completion)


async def test_a_reply_cut_short_counts_what_it_produced_as_estimated(
    client: httpx.AsyncClient, marker: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake", title="t"))["conversation_id"]
    directive = '!fake {"fail": "cut", "fail_after_tokens": 2}'
    posted = (
        await client.post(
            f"/api/messages/{cid}", json={"text": f"{directive}\nhi {marker}"}, headers=user.headers
        )
    ).json()
    state = await wait_generation(client, user, posted["generation_id"])

    assert state["status"] == "failed"
    reply = (await messages_of(client, user, cid))[-1]
    assert reply["text"] == "Hello from "
    assert reply["tokens_estimated"] is True
    assert reply["completion_tokens"] == math.ceil(len("Hello from ") / 4)
    assert (await usage(client, user))["totals"]["estimated_replies"] == 1


async def test_a_reply_that_produced_nothing_costs_nothing(
    client: httpx.AsyncClient, marker: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake", title="t"))["conversation_id"]
    posted = (
        await client.post(
            f"/api/messages/{cid}",
            json={"text": f'!fake {{"fail": "auth"}}\nhi {marker}'},
            headers=user.headers,
        )
    ).json()
    assert (await wait_generation(client, user, posted["generation_id"]))["status"] == "failed"

    reply = (await messages_of(client, user, cid))[-1]
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (None, None)
    assert (await usage(client, user))["groups"] == []


async def test_usage_is_the_key_s_that_asked_and_each_person_sees_their_own(
    client: httpx.AsyncClient, fake_llm: FakeLLM, marker: str
) -> None:
    admin = await make_sessionless_user(client)  # the first user: an admin
    ann = await make_sessionless_user(client)
    cid = (await make_conversation(client, ann, endpoint="fake", title="t"))["conversation_id"]
    key = await make_key(client, ann)
    posted = await client.post(
        f"/api/messages/{cid}",
        json={"role": "external", "content": f"from the key {marker}", "respond": True},
        headers=key.headers,
    )
    assert posted.status_code == 202, posted.text
    await wait_generation(client, ann, posted.json()["generation_id"])
    await ask(client, ann, cid, f"and from Ann {marker}")
    admin_cid = (await make_conversation(client, admin, endpoint="fake", title="t"))[
        "conversation_id"
    ]
    await ask(client, admin, admin_cid, f"the admin's own {marker}")

    by_key = await usage(client, ann, "?group_by=key")
    assert sorted((g["key"] is None, g["replies"]) for g in by_key["groups"]) == [
        (False, 1),
        (True, 1),
    ]
    assert group(by_key, key.id)["replies"] == 1
    assert by_key["totals"]["replies"] == 2
    # The admin's own view holds only the admin's reply; `all=true` everyone's.
    assert (await usage(client, admin))["totals"]["replies"] == 1
    everyone = await usage(client, admin, "?all=true&group_by=key")
    assert (everyone["scope"], everyone["totals"]["replies"]) == ("all", 3)
    assert group(everyone, key.id)["replies"] == 1
    refused = await client.get("/api/usage?all=true", headers=ann.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_required")


async def test_the_range_and_grouping(
    client: httpx.AsyncClient, fake_llm: FakeLLM, marker: str
) -> None:
    user = await make_user(client)
    cid = (await make_conversation(client, user, endpoint="fake", title="t"))["conversation_id"]
    await ask(client, user, cid, f"one {marker}")
    await ask(client, user, cid, f"two {marker}")

    today = await usage(client, user, "?group_by=day")
    [day] = today["groups"]
    assert day["replies"] == 2
    assert today["until"][:10] == day["key"]  # the UTC day, YYYY-MM-DD
    # A range that ends before the replies holds none; `until` is exclusive.
    assert (await usage(client, user, "?until=2020-01-01"))["groups"] == []
    assert (await usage(client, user, "?since=2020-01-01T00:00:00Z"))["totals"]["replies"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?group_by=week", "group_by"),
        ("?since=yesterday", "since"),
        ("?since=2026-01-02&until=2026-01-01", "since"),
        ("?since=2026-01-01&until=2026-01-01", "since"),
        # Before year 1 once in UTC: refused, not a crash.
        ("?since=0001-01-01T00:00:00%2B14:00", "since"),
        ("?until=0001-01-01T05:00:00%2B14:00", "until"),
    ],
)
async def test_bad_parameters_are_422_problems(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    user = await make_user(client)
    response = await client.get(f"/api/usage{query}", headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (response.json()["code"], response.json()["field"]) == ("validation_error", field)
