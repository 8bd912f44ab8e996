"""The agent's effective model, decided in one place, is never lost (regression matrix)."""

from __future__ import annotations

import itertools

import pytest

from relaychat.domain.agent.agents import AgentSpec, resolve_agent_model
from relaychat.statuses import AgentVisibility


def agent(model: str | None, params_model: str | None, **params: object) -> AgentSpec:
    parameters = dict(params)
    if params_model is not None:
        parameters["model"] = params_model
    return AgentSpec(
        id="agent_x",
        user_id="u",
        name="A",
        instructions=None,
        endpoint="fake",
        model=model,
        model_parameters=parameters,
        tools=(),
        mcp_servers=(),
        visibility=AgentVisibility.PRIVATE,
    )


OVERRIDES = [None, "override-model"]
CONVERSATION_MODELS = [None, "", "convo-model"]
CONVERSATION_PARAMS: list[dict[str, object] | None] = [
    None,
    {},
    {"temperature": 0.1},  # parameters without a model: the historical bug
    {"model": ""},
    {"model": "convo-params-model", "temperature": 0.1},
]
AGENT_PARAM_MODELS = [None, "agent-params-model"]
AGENT_MODELS = [None, "agent-model"]


@pytest.mark.parametrize(
    ("override", "convo_model", "convo_params", "agent_params_model", "agent_model"),
    list(
        itertools.product(
            OVERRIDES, CONVERSATION_MODELS, CONVERSATION_PARAMS, AGENT_PARAM_MODELS, AGENT_MODELS
        )
    ),
)
def test_every_combination_picks_the_first_non_empty_in_order(
    override: str | None,
    convo_model: str | None,
    convo_params: dict[str, object] | None,
    agent_params_model: str | None,
    agent_model: str | None,
) -> None:
    spec = agent(agent_model, agent_params_model, top_p=0.5)
    model, params = resolve_agent_model(
        spec,
        override=override,
        conversation_model=convo_model,
        conversation_parameters=convo_params,
    )
    expected = next(
        (
            c
            for c in (
                override,
                convo_model,
                (convo_params or {}).get("model"),
                agent_params_model,
                agent_model,
            )
            if c
        ),
        None,
    )
    assert model == expected
    assert "model" not in params
    assert params["top_p"] == 0.5  # the agent's parameters survive the merge
    if convo_params and "temperature" in convo_params:
        assert params["temperature"] == 0.1


def test_agent_spec_is_not_changed_by_resolution() -> None:
    spec = agent("agent-model", "agent-params-model")
    resolve_agent_model(spec, conversation_parameters={"temperature": 1.0})
    assert spec.model_parameters == {"model": "agent-params-model"}
