"""GET /v1/models through the SDK: endpoint models and agents, under the key's permissions."""

from __future__ import annotations

import httpx

from tests.support.chat import make_agent
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import sdk

ENDPOINT_MODELS = ["anthropic/fake-model", "fake/fake-model", "fake/fake-model-mini"]


async def test_a_person_sees_every_endpoint_model_and_their_agents(
    client: httpx.AsyncClient, live_url: str
) -> None:
    await make_user(client)  # the first user is the admin, who sees every agent
    owner, other = await make_user(client), await make_user(client)
    mine = await make_agent(client, owner, name="Mine")
    await make_agent(client, other, name="Theirs")  # private: not listed for the owner
    async with sdk(live_url, owner.access_token) as openai:
        models = [model async for model in openai.models.list()]
    assert sorted(m.id for m in models) == sorted([*ENDPOINT_MODELS, mine["agent_id"]])
    assert {m.owned_by for m in models if m.id.startswith("fake/")} == {"fake"}


async def test_a_key_sees_only_what_it_may_use(client: httpx.AsyncClient, live_url: str) -> None:
    owner = await make_user(client)
    first = await make_agent(client, owner, name="First")
    await make_agent(client, owner, name="Second")
    key = await make_key(
        client, owner, allowed_endpoints=["fake"], allowed_agents=[first["agent_id"]]
    )
    async with sdk(live_url, key.secret) as openai:
        ids = [model.id async for model in openai.models.list()]
        one = await openai.models.retrieve("fake/fake-model")
    assert sorted(ids) == sorted(["fake/fake-model", "fake/fake-model-mini", first["agent_id"]])
    assert one.id == "fake/fake-model"
