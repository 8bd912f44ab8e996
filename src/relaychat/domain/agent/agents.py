"""Agents: create, read, change and delete them, by visibility; resolve the model they run on."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.merge_patch import merge_patch
from relaychat.errors import ErrorCode, Forbidden, NotFound, ValidationFailed
from relaychat.llm.mcp.tools import server_of
from relaychat.statuses import AgentVisibility
from relaychat.storage.models import Agent, User
from relaychat.storage.types import utcnow

AGENT_ID_PREFIX = "agent_"
AGENTS_ENDPOINT = "agents"
EDITABLE_FIELDS = frozenset(
    {
        "name",
        "description",
        "instructions",
        "endpoint",
        "model",
        "model_parameters",
        "tools",
        "mcp_servers",
        "visibility",
    }
)


class AgentNotFound(NotFound):
    code = ErrorCode.AGENT_NOT_FOUND
    title = "Agent not found"


class AgentReadOnly(Forbidden):
    code = ErrorCode.AGENT_READ_ONLY
    title = "Only the agent's owner or an admin may change it"


@dataclass(frozen=True)
class AgentSpec:
    """An immutable snapshot of an agent: safe to cache and share between generations."""

    id: str
    user_id: str
    name: str
    instructions: str | None
    endpoint: str
    model: str | None
    model_parameters: dict[str, Any]
    tools: tuple[str, ...]
    mcp_servers: tuple[str, ...]
    visibility: AgentVisibility

    @classmethod
    def of(cls, agent: Agent) -> AgentSpec:
        return cls(
            id=agent.id,
            user_id=agent.user_id,
            name=agent.name,
            instructions=agent.instructions,
            endpoint=agent.endpoint,
            model=agent.model,
            model_parameters=dict(agent.model_parameters or {}),
            tools=tuple(agent.tools or ()),
            mcp_servers=tuple(agent.mcp_servers or ()),
            visibility=agent.visibility,
        )

    def visible_to(self, user_id: str, *, admin: bool = False) -> bool:
        """Whether this user may use the agent."""
        return admin or self.user_id == user_id or self.visibility == AgentVisibility.PUBLIC


def new_agent_id() -> str:
    """`agent_` and 128 random bits."""
    return AGENT_ID_PREFIX + secrets.token_hex(16)


def resolve_agent_model(
    agent: AgentSpec,
    *,
    override: str | None = None,
    conversation_model: str | None = None,
    conversation_parameters: dict[str, Any] | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """The model an agent runs on, and its parameters, decided in one place.

    Order: an explicit override (a caller's), the conversation's model, the conversation's
    `model_parameters.model`, the agent's `model_parameters.model`, the agent's `model`.
    Parameters merge the agent's with the conversation's; a `model_parameters` without
    `model` (or with an empty one) never erases the agent's model.
    """
    conversation_parameters = conversation_parameters or {}
    candidates = (
        override,
        conversation_model,
        conversation_parameters.get("model"),
        agent.model_parameters.get("model"),
        agent.model,
    )
    model = next((str(c) for c in candidates if isinstance(c, str) and c.strip()), None)
    merged = {**agent.model_parameters, **conversation_parameters}
    merged.pop("model", None)
    return model, merged


def _visible_clause(user: User) -> Any:
    if is_admin(user):
        return True
    return or_(Agent.user_id == user.id, Agent.visibility == AgentVisibility.PUBLIC)


async def list_agents(session: AsyncSession, user: User) -> Sequence[Agent]:
    """The user's own agents and every public one, newest first."""
    query = select(Agent).where(_visible_clause(user)).order_by(Agent.created_at.desc(), Agent.id)
    return (await session.scalars(query)).all()


async def get_visible_agent(session: AsyncSession, user: User, agent_id: str) -> Agent:
    """An agent the user may use; a private one of someone else is reported missing."""
    agent = await session.scalar(select(Agent).where(Agent.id == agent_id, _visible_clause(user)))
    if agent is None:
        raise AgentNotFound(f"no agent {agent_id!r} is visible to you", agent_id=agent_id)
    return agent


async def get_editable_agent(session: AsyncSession, user: User, agent_id: str) -> Agent:
    """An agent the user may change: their own, or any (visible) one for an admin."""
    agent = await get_visible_agent(session, user, agent_id)
    if agent.user_id != user.id and not is_admin(user):
        raise AgentReadOnly(agent_id=agent_id)
    return agent


def check_agent_fields(
    fields: dict[str, Any],
    *,
    endpoints: Sequence[str],
    tools: Sequence[str],
    servers: Mapping[str, Collection[str] | None],
) -> None:
    """Refuse unknown endpoints, tools and MCP servers, naming the field.

    `servers` maps each MCP server an agent may name to its tools' names (`server__tool`)
    where they are known, else None. A tool of a server whose tools are not known (it has
    not started in this process, or is down) is accepted on its server's name: it may come
    back, and the agent goes without it until then.
    """
    endpoint = fields.get("endpoint")
    if endpoint is not None and (endpoint == AGENTS_ENDPOINT or endpoint not in endpoints):
        raise ValidationFailed(
            f"unknown endpoint {endpoint!r}; configured: {', '.join(endpoints) or 'none'}",
            field="endpoint",
        )
    unknown_tools = sorted(
        name
        for name in set(fields.get("tools") or ())
        if name not in tools and not _offered(name, servers)
    )
    if unknown_tools:
        # A misspelt tool of a running server: say what the server has.
        hints = [
            f"; MCP server {server} offers {', '.join(sorted(servers[server] or ())) or 'none'}"
            for server in dict.fromkeys(server_of(name, servers) for name in unknown_tools)
            if server is not None
        ]
        raise ValidationFailed(
            f"unknown tools: {', '.join(unknown_tools)}{''.join(hints)}", field="tools"
        )
    unknown_servers = sorted(set(fields.get("mcp_servers") or ()) - set(servers))
    if unknown_servers:
        raise ValidationFailed(
            f"unknown MCP servers: {', '.join(unknown_servers)}", field="mcp_servers"
        )


def _offered(name: str, servers: Mapping[str, Collection[str] | None]) -> bool:
    server = server_of(name, servers)
    if server is None:
        return False
    known = servers[server]
    return known is None or name in known


async def create_agent(session: AsyncSession, owner: User, fields: dict[str, Any]) -> Agent:
    """Store a new agent owned by `owner` (fields already checked)."""
    now = utcnow()
    agent = Agent(
        id=new_agent_id(),
        user_id=owner.id,
        created_at=now,
        updated_at=now,
        **{k: v for k, v in fields.items() if k in EDITABLE_FIELDS and v is not None},
    )
    session.add(agent)
    await session.commit()
    return agent


async def update_agent(session: AsyncSession, agent: Agent, changes: dict[str, Any]) -> Agent:
    """Apply changes (already checked); `model_parameters` is merge-patched."""
    for key, value in changes.items():
        if key not in EDITABLE_FIELDS:
            continue
        # Every NOT NULL column refuses null here, not as an IntegrityError at commit.
        if value is None and not inspect(Agent).columns[key].nullable:
            raise ValidationFailed(f"{key} cannot be null", field=key)
        if key == "model_parameters":  # a nested object: merge-patched (RFC 7396)
            value = merge_patch(agent.model_parameters or {}, value)
        setattr(agent, key, value)
    agent.updated_at = utcnow()
    await session.commit()
    return agent


async def delete_agent(session: AsyncSession, agent: Agent) -> None:
    """Delete the agent and its memories."""
    await session.delete(agent)
    await session.commit()
