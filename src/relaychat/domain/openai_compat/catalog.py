"""The models a caller may name: endpoint models as `<endpoint>/<model>` and agents by id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.agent.agent_cache import AgentCache
from relaychat.domain.agent.agents import AGENT_ID_PREFIX, list_agents
from relaychat.domain.messaging.conversations import EndpointCatalog
from relaychat.domain.openai_compat.callers import ApiCaller, ModelNotFound
from relaychat.errors import UserGone
from relaychat.storage.models import User


@dataclass(frozen=True)
class ModelEntry:
    """One model of the list: its id, who provides it, and when it appeared (agents)."""

    id: str
    owned_by: str
    created: datetime | None = None


@dataclass(frozen=True)
class Target:
    """What answers a call: an endpoint's model, or an agent (then `endpoint` is its own)."""

    name: str  # as the caller named it
    endpoint: str
    model: str | None
    agent_id: str | None = None


async def owner_of(session: AsyncSession, caller: ApiCaller) -> User:
    owner = await session.get(User, caller.owner_id)
    if owner is None:
        raise UserGone()
    return owner


# Built once: every new conversation of a call reads it.
_OWNER_NAME = select(User.name).where(User.id == bindparam("user_id"))


async def owner_name(session: AsyncSession, caller: ApiCaller) -> str:
    """The owner's name alone (what its turns are signed with), without loading the user."""
    name = (await session.execute(_OWNER_NAME, {"user_id": caller.owner_id})).scalar()
    if name is None:
        raise UserGone()
    return str(name)


async def list_models(
    session: AsyncSession, providers: EndpointCatalog, caller: ApiCaller
) -> list[ModelEntry]:
    """Every model the caller may use: the endpoints' first, then the owner's visible agents."""
    entries = [
        ModelEntry(f"{endpoint}/{model}", owned_by=endpoint)
        for endpoint in providers.names()
        if caller.may_use_endpoint(endpoint)
        for model in await providers.models(endpoint)
    ]
    owner = await owner_of(session, caller)
    entries += [
        ModelEntry(agent.id, owned_by=agent.user_id, created=agent.created_at)
        for agent in await list_agents(session, owner)
        if caller.may_use_agent(agent.id)
    ]
    return entries


async def resolve(
    sessions: async_sessionmaker[AsyncSession],
    providers: EndpointCatalog,
    agents: AgentCache,
    caller: ApiCaller,
    name: str,
) -> Target:
    """The target `name` stands for; 404 `model_not_found` for what does not exist (or the
    owner cannot see), 403 `permission_denied` for what the key may not use. Only an agent
    is read from the database (an endpoint's models are the registry's)."""
    if name.startswith(AGENT_ID_PREFIX):
        async with sessions() as session:
            owner = await owner_of(session, caller)
            agent = await agents.get(session, name)
        if agent is None or not agent.visible_to(owner.id, admin=is_admin(owner)):
            raise ModelNotFound(f"the model {name!r} does not exist", field="model")
        caller.check_agent(agent.id)
        return Target(name, agent.endpoint, None, agent.id)
    endpoint, _, model = name.partition("/")
    if not model or endpoint not in providers.names():
        raise ModelNotFound(
            f"the model {name!r} does not exist: name an agent (`agent_…`) or an endpoint's "
            "model as `<endpoint>/<model>` (GET /v1/models lists them)",
            field="model",
        )
    caller.check_endpoint(endpoint)
    if model not in await providers.models(endpoint):
        raise ModelNotFound(f"the model {name!r} does not exist", field="model")
    return Target(name, endpoint, model)
