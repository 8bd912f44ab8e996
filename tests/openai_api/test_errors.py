"""Errors on /v1 in OpenAI's shape, raised by the SDK as its usual exceptions; the rest of
the API keeps problem+json."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from relaychat.services import Services
from tests.support.chat import make_agent, messages_of
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import sdk

HELLO = [{"role": "user", "content": "hello"}]


async def test_a_bad_key_is_an_authentication_error(
    client: httpx.AsyncClient, live_url: str
) -> None:
    async with sdk(live_url, "rck_000000000000_not-a-real-secret-at-all") as api:
        with pytest.raises(openai.AuthenticationError) as raised:
            await api.chat.completions.create(model="fake/fake-model", messages=HELLO)  # type: ignore[arg-type]
    assert raised.value.status_code == 401
    assert raised.value.body == {
        "message": raised.value.body["message"],  # type: ignore[index]
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    # Outside /v1 the same credential is refused as problem+json.
    problem = await client.get("/api/convos", headers={"Authorization": "Bearer nope"})
    assert problem.headers["content-type"] == "application/problem+json"


async def test_an_unknown_model_is_not_found(client: httpx.AsyncClient, live_url: str) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    async with sdk(live_url, key.secret) as api:
        for model in ("fake/no-such-model", "nowhere/fake-model", "agent_missing", "gpt-4o"):
            with pytest.raises(openai.NotFoundError) as raised:
                await api.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
            assert raised.value.code == "model_not_found", model
            assert raised.value.param == "model"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"temperature": 3}, "temperature"),
    ],
)
async def test_what_cannot_be_honoured_is_a_bad_request_naming_it(
    client: httpx.AsyncClient, live_url: str, extra: dict[str, object], param: str
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    async with sdk(live_url, key.secret) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.chat.completions.create(
                model="fake/fake-model",
                messages=HELLO,  # type: ignore[arg-type]
                extra_body=extra,
            )
    assert raised.value.status_code == 400
    assert raised.value.param == param
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []


async def test_a_rate_limited_key_gets_retry_after(
    client: httpx.AsyncClient, live_url: str, services: Services
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner, rate_limit={"requests": 1, "window": 60})
    async with sdk(live_url, key.secret) as api:
        await api.models.list()
        with pytest.raises(openai.RateLimitError) as raised:
            await api.chat.completions.create(model="fake/fake-model", messages=HELLO)  # type: ignore[arg-type]
    assert raised.value.status_code == 429
    assert 0 < int(raised.value.response.headers["retry-after"]) <= 60
    assert raised.value.code == "rate_limited"
    await services.audit.flush()
    rows = (await client.get(f"/api/keys/{key.id}/audit", headers=owner.headers)).json()["events"]
    assert [(r["status"], r["outcome"], r["reason"]) for r in rows] == [
        (429, "refused", "rate_limited"),
        (200, "accepted", None),
    ]


async def test_a_key_refused_an_endpoint_is_permission_denied(
    client: httpx.AsyncClient, live_url: str
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner, allowed_endpoints=["anthropic"])
    async with sdk(live_url, key.secret) as api:
        with pytest.raises(openai.PermissionDeniedError) as raised:
            await api.chat.completions.create(model="fake/fake-model", messages=HELLO)  # type: ignore[arg-type]
    assert raised.value.code == "permission_denied"


async def test_another_persons_conversation_cannot_be_continued(
    client: httpx.AsyncClient, live_url: str
) -> None:
    await make_user(client)  # the admin, who could see every agent
    owner, stranger = await make_user(client), await make_user(client)
    agent = await make_agent(client, owner)
    async with sdk(live_url, owner.access_token) as api:
        raw = await api.chat.completions.with_raw_response.create(
            model="fake/fake-model",
            messages=HELLO,  # type: ignore[arg-type]
        )
    cid = raw.headers["x-relaychat-conversation-id"]
    async with sdk(live_url, stranger.access_token) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.chat.completions.create(
                model="fake/fake-model",
                messages=HELLO,  # type: ignore[arg-type]
                extra_headers={"x-relaychat-conversation-id": cid},
            )
    assert raised.value.code == "conversation_not_found"
    key = await make_key(client, stranger)
    async with sdk(live_url, key.secret) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.chat.completions.create(
                model="fake/fake-model",
                messages=HELLO,  # type: ignore[arg-type]
                extra_body={"conversation_id": cid},
            )
        with pytest.raises(openai.NotFoundError) as by_agent:
            await api.chat.completions.create(
                model=agent["agent_id"],
                messages=HELLO,  # type: ignore[arg-type]
            )
    assert raised.value.code == "conversation_not_found"
    assert by_agent.value.code == "model_not_found"
    assert len(await messages_of(client, owner, cid)) == 2


async def test_an_unknown_path_under_v1_answers_in_openais_shape(live_url: str) -> None:
    async with httpx.AsyncClient(base_url=live_url) as http:
        answer = await http.get("/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "not_found_error"


async def test_a_key_over_its_daily_budget_gets_insufficient_quota(
    client: httpx.AsyncClient, live_url: str
) -> None:
    """The first call spends more than the budget; the next is refused as OpenAI refuses a
    spent quota (a 429 the SDK raises as RateLimitError), and stores nothing. `store: false`
    would leave nothing for the budget to count, so such a key may not use it."""
    owner = await make_user(client)
    key = await make_key(client, owner, max_tokens_per_day=1)
    async with sdk(live_url, key.secret) as api:
        first = await api.chat.completions.create(model="fake/fake-model", messages=HELLO)  # type: ignore[arg-type]
        assert first.choices[0].message.content
        with pytest.raises(openai.RateLimitError) as raised:
            await api.chat.completions.create(model="fake/fake-model", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as unstored:
            await api.chat.completions.create(
                model="fake/fake-model",
                messages=HELLO,  # type: ignore[arg-type]
                extra_body={"store": False},
            )
    assert raised.value.status_code == 429
    assert raised.value.body == {
        "message": raised.value.body["message"],  # type: ignore[index]
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert int(raised.value.response.headers["retry-after"]) > 0
    assert (unstored.value.code, unstored.value.param) == ("unsupported_parameter", "store")
    conversations = (await client.get("/api/convos", headers=owner.headers)).json()
    assert len(conversations["conversations"]) == 1


async def test_refusals_before_routing_come_in_openais_shape(
    client: httpx.AsyncClient, live_url: str, services: Services
) -> None:
    """A body over the size limit (413) and input no route could store (422) are refused by
    middleware before /v1's routes, in OpenAI's shape all the same; the rest of the API keeps
    problem+json for them."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    too_long = "x" * (services.settings.max_body_bytes + 1)
    async with sdk(live_url, key.secret) as api:
        with pytest.raises(openai.APIStatusError) as too_large:
            await api.chat.completions.create(
                model="fake/fake-model", messages=[{"role": "user", "content": too_long}]
            )
        with pytest.raises(openai.UnprocessableEntityError) as unstorable:
            await api.responses.create(model="fake/fake-model", input="a\u0000b")
    assert too_large.value.status_code == 413
    assert too_large.value.response.headers["content-type"] == "application/json"
    assert too_large.value.body == {
        "message": too_large.value.body["message"],  # type: ignore[index]
        "type": "invalid_request_error",
        "param": None,
        "code": "payload_too_large",
    }
    assert unstorable.value.status_code == 422
    assert unstorable.value.response.headers["content-type"] == "application/json"
    assert unstorable.value.body == {
        "message": unstorable.value.body["message"],  # type: ignore[index]
        "type": "invalid_request_error",
        "param": "input",
        "code": "validation_error",
    }
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []
    problem = await client.post("/api/convos", json={"title": "a\u0000b"}, headers=owner.headers)
    assert problem.status_code == 422
    assert problem.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("store", [True, False], ids=["stored", "unstored"])
async def test_a_stream_whose_upstream_refuses_ends_with_an_error_event(
    client: httpx.AsyncClient, live_url: str, store: bool
) -> None:
    """A stream is answered at once; the upstream's refusal comes as an `error` event
    naming the reason, which the SDK raises while the stream is read."""
    owner = await make_user(client)
    key = await make_key(client, owner)
    failing: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": '!fake {"fail": "auth"}\nhello'}
    ]
    async with sdk(live_url, key.secret) as client_sdk:
        stream = await client_sdk.chat.completions.create(
            model="fake/fake-model", messages=failing, stream=True, store=store
        )
        with pytest.raises(openai.APIError, match="provider_auth_failed"):
            async for _ in stream:
                pass


@pytest.mark.parametrize("store", [True, False], ids=["stored", "unstored"])
async def test_a_stream_that_fails_after_its_first_text_ends_with_an_error_event(
    client: httpx.AsyncClient, live_url: str, store: bool
) -> None:
    owner = await make_user(client)
    key = await make_key(client, owner)
    failing: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": '!fake {"fail": "error_event", "fail_after_tokens": 2}\nhi'}
    ]
    text = ""
    async with sdk(live_url, key.secret) as client_sdk:
        stream = await client_sdk.chat.completions.create(
            model="fake/fake-model",
            messages=failing,
            stream=True,
            store=store,
        )
        with pytest.raises(openai.APIError, match="the reply failed"):
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text
