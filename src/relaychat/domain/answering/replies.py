"""Deciding who answers in a conversation: an endpoint and model, or an agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.agent.agent_cache import AgentCache
from relaychat.domain.agent.agents import (
    AGENTS_ENDPOINT,
    AgentNotFound,
    AgentSpec,
    resolve_agent_model,
)
from relaychat.domain.answering.generations import NoEndpoint, NoModel, Providers
from relaychat.errors import ErrorCode, Unprocessable
from relaychat.storage.models import Conversation, User


class AgentRequired(Unprocessable):
    code = ErrorCode.AGENT_REQUIRED
    title = "An agents conversation needs an agent_id"


@dataclass(frozen=True)
class ReplyPlan:
    """The endpoint, model, system prompt and parameters of one reply."""

    endpoint: str
    model: str
    system: str | None
    parameters: dict[str, Any]
    agent: AgentSpec | None = None

    @property
    def sender(self) -> str:
        """Who the reply is from, as people see it: the agent by its name, else the model."""
        return self.agent.name if self.agent is not None else self.model


async def plan_reply(
    session: AsyncSession,
    providers: Providers,
    agents: AgentCache,
    conversation: Conversation,
    *,
    model_override: str | None = None,
    agent_override: str | None = None,
) -> ReplyPlan:
    """Who answers, checked before anything is written (unknown endpoint, invisible agent)."""
    agent_id = agent_override or conversation.agent_id
    if conversation.endpoint == AGENTS_ENDPOINT or agent_override:
        if not agent_id:
            raise AgentRequired("set the conversation's `agent_id`", field="agent_id")
        return await _agent_plan(session, providers, agents, conversation, agent_id, model_override)
    return endpoint_plan(providers, conversation, model_override=model_override)


def endpoint_plan(
    providers: Providers, conversation: Conversation, *, model_override: str | None = None
) -> ReplyPlan:
    """`plan_reply` for a conversation answered by an endpoint's model, not an agent: made
    from the endpoint registry alone."""
    if not conversation.endpoint:
        raise NoEndpoint("set the conversation's `endpoint` to get replies", field="endpoint")
    providers.provider(conversation.endpoint)  # refuses an unknown endpoint up front
    parameters = dict(conversation.model_parameters or {})
    model = (
        model_override
        or conversation.model
        or parameters.pop("model", None)
        or providers.default_model(conversation.endpoint)
    )
    parameters.pop("model", None)
    if not model:
        raise NoModel(f"name a model for endpoint {conversation.endpoint!r}", field="model")
    return ReplyPlan(
        conversation.endpoint, str(model), conversation.system_prompt or None, parameters
    )


async def _agent_plan(
    session: AsyncSession,
    providers: Providers,
    agents: AgentCache,
    conversation: Conversation,
    agent_id: str,
    model_override: str | None,
) -> ReplyPlan:
    agent = await agents.get(session, agent_id)
    owner = await session.get(User, conversation.user_id)
    admin = owner is not None and is_admin(owner)
    if agent is None or not agent.visible_to(conversation.user_id, admin=admin):
        raise AgentNotFound(
            f"agent {agent_id!r} does not exist or is not visible to the conversation's owner",
            agent_id=agent_id,
        )
    providers.provider(agent.endpoint)
    model, parameters = resolve_agent_model(
        agent,
        override=model_override,
        conversation_model=conversation.model,
        conversation_parameters=conversation.model_parameters,
    )
    model = model or providers.default_model(agent.endpoint)
    if not model:
        raise NoModel(f"agent {agent.id} names no model", field="model")
    system = "\n\n".join(p for p in (agent.instructions, conversation.system_prompt) if p)
    return ReplyPlan(agent.endpoint, model, system or None, parameters, agent)
