"""Helpers over the chat API: replies awaited, messages read, agents made, scripted turns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support.factories import TestUser, make_conversation

FINAL = {"completed", "failed", "aborted", "interrupted"}


async def wait_generation(
    client: httpx.AsyncClient, user: TestUser, generation_id: str
) -> dict[str, Any]:
    """Poll until the generation is settled (bounded: a hang fails instead of blocking)."""
    for _ in range(600):
        state: dict[str, Any] = (
            await client.get(f"/api/generations/{generation_id}", headers=user.headers)
        ).json()
        if state["status"] in FINAL:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"generation {generation_id} never finished: {state}")


async def messages_of(client: httpx.AsyncClient, user: TestUser, cid: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/messages/{cid}", headers=user.headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["messages"]
    return result


async def make_agent(client: httpx.AsyncClient, user: TestUser, **fields: Any) -> dict[str, Any]:
    body = {"name": "Helper", "endpoint": "fake", **fields}
    response = await client.post("/api/agents", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def ask(client: httpx.AsyncClient, user: TestUser, cid: str, text: str) -> dict[str, Any]:
    response = await client.post(f"/api/messages/{cid}", json={"text": text}, headers=user.headers)
    assert response.status_code == 202, response.text
    posted: dict[str, Any] = response.json()
    await wait_generation(client, user, posted["generation_id"])
    return posted


def script(*turns: Any) -> str:
    """A `!fake` directive making the fake upstream play these assistant turns."""
    return "!fake " + json.dumps({"script": list(turns)})


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in pairs]}


async def agent_conversation(
    client: httpx.AsyncClient, user: TestUser, **agent_fields: Any
) -> tuple[str, str]:
    agent = await make_agent(client, user, **agent_fields)
    cid = (
        await make_conversation(
            client, user, endpoint="agents", agent_id=agent["agent_id"], title="t"
        )
    )["conversation_id"]
    return agent["agent_id"], cid
