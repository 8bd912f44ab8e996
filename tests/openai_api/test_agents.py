"""Agents as models (`agent_…`): the agent's tools run on the server and the caller sees
the answer, whole or streamed; what an agent cannot do is a 400 naming the parameter."""

from __future__ import annotations

import json
import uuid

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from relaychat.devtools.fake_llm import FakeLLM
from tests.support.chat import calls, make_agent, messages_of, script
from tests.support.factories import make_key, make_user
from tests.support.openai_sdk import replies_asked, sdk

SUM = script(calls(("calculator", {"expression": "17 * 23"})), "The answer is 391.")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_an_agent_runs_its_tools_and_answers(
    client: httpx.AsyncClient, live_url: str, fake_llm: FakeLLM, stream: bool
) -> None:
    owner = await make_user(client)
    agent = await make_agent(client, owner, tools=["calculator"], instructions="Be exact.")
    key = await make_key(client, owner, allowed_agents=[agent["agent_id"]])
    marker = str(uuid.uuid4())
    question = f"{SUM}\nwhat is 17*23? {marker}"
    async with sdk(live_url, key.secret) as api:
        if stream:
            chunks = await api.chat.completions.create(
                model=agent["agent_id"],
                messages=[{"role": "user", "content": question}],
                stream=True,
            )
            seen = [chunk async for chunk in chunks]
            headers = chunks.response.headers
            text = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
            assert not any(c.choices[0].delta.tool_calls for c in seen if c.choices)
            finish = [c.choices[0].finish_reason for c in seen if c.choices][-1]
        else:
            raw = await api.chat.completions.with_raw_response.create(
                model=agent["agent_id"], messages=[{"role": "user", "content": question}]
            )
            headers, completion = raw.headers, raw.parse()
            text = completion.choices[0].message.content or ""
            finish = completion.choices[0].finish_reason
            assert completion.choices[0].message.tool_calls is None
    assert (text, finish) == ("The answer is 391.", "stop")
    # The calculator ran here: its result went back to the model.
    upstream = replies_asked(fake_llm, marker)
    assert len(upstream) == 2
    assert upstream[1]["messages"][0] == {"role": "system", "content": "Be exact."}
    assert upstream[1]["messages"][-1]["role"] == "tool"
    assert upstream[1]["messages"][-1]["content"] == "391"

    cid = headers["x-relaychat-conversation-id"]
    conversation = (await client.get(f"/api/convos/{cid}", headers=owner.headers)).json()
    assert (conversation["endpoint"], conversation["agent_id"]) == ("agents", agent["agent_id"])
    asked, reply = await messages_of(client, owner, cid)
    assert asked["api_key_id"] == key.id
    assert [p["type"] for p in reply["content"]] == ["tool_call", "tool_result", "text"]


async def test_what_an_agent_cannot_do_is_a_bad_request(
    client: httpx.AsyncClient, live_url: str
) -> None:
    owner = await make_user(client)
    agent = await make_agent(client, owner)
    other = await make_agent(client, owner, name="Other")
    key = await make_key(client, owner, allowed_agents=[agent["agent_id"]])
    hello = [{"role": "user", "content": "hello"}]
    async with sdk(live_url, key.secret) as api:
        with pytest.raises(openai.BadRequestError) as unstored:
            await api.chat.completions.create(
                model=agent["agent_id"],
                messages=hello,  # type: ignore[arg-type]
                store=False,
            )
        with pytest.raises(openai.BadRequestError) as with_tools:
            await api.chat.completions.create(
                model=agent["agent_id"],
                messages=hello,  # type: ignore[arg-type]
                tools=[{"type": "function", "function": {"name": "f"}}],
            )
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await api.chat.completions.create(
                model=other["agent_id"],
                messages=hello,  # type: ignore[arg-type]
            )
    assert (unstored.value.param, with_tools.value.param) == ("store", "tools")
    assert refused.value.code == "permission_denied"
    assert (await client.get("/api/convos", headers=owner.headers)).json()["conversations"] == []


STEPS = script(
    calls(("calculator", {"expression": "17 * 23"})),
    calls(("calculator", {"expression": "17 *"})),
    "The answer is 391.",
)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_tool_steps_of_an_agent_come_when_asked(
    client: httpx.AsyncClient, live_url: str, stream: bool
) -> None:
    """`include_tool_steps` (relaychat's extension): the tools the agent ran, each with its
    arguments and output (an error too), on the message or a chunk each as it ran."""
    owner = await make_user(client)
    agent = await make_agent(client, owner, tools=["calculator"])
    key = await make_key(client, owner, allowed_agents=[agent["agent_id"]])
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"{STEPS}\nwhat is 17*23?"}
    ]
    async with sdk(live_url, key.secret) as api:
        if stream:
            chunks = await api.chat.completions.create(
                model=agent["agent_id"],
                messages=question,
                stream=True,
                extra_body={"include_tool_steps": True},
            )
            seen = [chunk async for chunk in chunks]
            deltas = [c.choices[0].delta for c in seen if c.choices]
            steps = [s for d in deltas for s in (d.model_extra or {}).get("tool_steps", ())]
            # Each step comes as it ran, before the answer's text.
            first_text = next(i for i, d in enumerate(deltas) if d.content)
            last_step = max(
                i for i, d in enumerate(deltas) if "tool_steps" in (d.model_extra or {})
            )
            assert last_step < first_text
            text = "".join(d.content or "" for d in deltas)
        else:
            completion = await api.chat.completions.create(
                model=agent["agent_id"],
                messages=question,
                extra_body={"include_tool_steps": True},
            )
            message = completion.choices[0].message
            steps = (message.model_extra or {})["tool_steps"]
            text = message.content or ""
            assert message.tool_calls is None
        # Not asked for: not there.
        plain = await api.chat.completions.create(
            model=agent["agent_id"],
            messages=question,
        )
    assert text == "The answer is 391."
    assert [(s["name"], json.loads(s["arguments"]), s["is_error"]) for s in steps] == [
        ("calculator", {"expression": "17 * 23"}, False),
        ("calculator", {"expression": "17 *"}, True),
    ]
    assert steps[0]["output"] == "391"
    assert steps[1]["output"].startswith("error:")
    assert all(s["id"] for s in steps) and steps[0]["id"] != steps[1]["id"]
    assert "tool_steps" not in (plain.choices[0].message.model_extra or {})
