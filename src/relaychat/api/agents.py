"""Agents: instructions, a model and tools; private to their owner or public to everyone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.agent import agents
from relaychat.domain.agent.toolbox import CatalogEntry, McpServerInfo
from relaychat.http.deps import CurrentUser, EngineDep, SessionDep
from relaychat.resources import AgentOut
from relaychat.statuses import AgentVisibility

router = APIRouter(prefix="/api/agents", tags=["agents"])

AgentId = Annotated[str, Path(max_length=64)]


class AgentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=2000)
    instructions: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, max_length=200)
    model_parameters: dict[str, Any] | None = None
    tools: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=64)
    mcp_servers: list[Annotated[str, Field(max_length=30)]] | None = Field(None, max_length=32)
    visibility: AgentVisibility | None = Field(None, title="Visibility")


class AgentCreate(AgentFields):
    name: str = Field(min_length=1, max_length=200)
    endpoint: str = Field(min_length=1, max_length=100)


class AgentPatch(AgentFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    endpoint: str | None = Field(None, min_length=1, max_length=100)


class AgentList(BaseModel):
    agents: list[AgentOut]


class ToolList(BaseModel):
    tools: list[CatalogEntry] = Field(
        description="Every tool by the name an agent's `tools` lists, and failed MCP servers."
    )
    servers: list[McpServerInfo] = Field(description="Each MCP server, its state and tools.")


def _check(engine: EngineDep, fields: dict[str, Any]) -> None:
    toolbox = engine.toolbox
    agents.check_agent_fields(
        fields,
        endpoints=list(engine.providers.names()),
        tools=toolbox.tool_names() if toolbox else [],
        servers=toolbox.server_tools() if toolbox else {},
    )


@router.get("/tools")
async def list_tools(
    _user: CurrentUser,
    engine: EngineDep,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=120,
            description="Seconds to wait for MCP servers being started; those still starting "
            "are listed as `starting`. Default: until each has started or failed.",
        ),
    ] = None,
) -> ToolList:
    """Every tool an agent may use: built-in, relaychat's own, and each MCP server's, with
    every server's state (`running`, `starting`, `failed` and why, `disabled`)."""
    if engine.toolbox is None:
        return ToolList(tools=[], servers=[])
    catalog = await engine.toolbox.catalog(wait)
    return ToolList(tools=catalog.tools, servers=catalog.servers)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: AgentCreate, user: CurrentUser, session: SessionDep, engine: EngineDep
) -> AgentOut:
    """Create an agent owned by you."""
    fields = body.model_dump(exclude_none=True)
    _check(engine, fields)
    return AgentOut.model_validate(await agents.create_agent(session, user, fields))


@router.get("")
async def list_(user: CurrentUser, session: SessionDep) -> AgentList:
    """Your agents and every public one."""
    rows = await agents.list_agents(session, user)
    return AgentList(agents=[AgentOut.model_validate(a) for a in rows])


@router.get("/{agent_id}")
async def get(agent_id: AgentId, user: CurrentUser, session: SessionDep) -> AgentOut:
    """One agent you may use."""
    return AgentOut.model_validate(await agents.get_visible_agent(session, user, agent_id))


@router.patch("/{agent_id}")
async def patch(
    agent_id: AgentId, body: AgentPatch, user: CurrentUser, session: SessionDep, engine: EngineDep
) -> AgentOut:
    """Change your agent (admins may change any); takes effect at once on every worker."""
    agent = await agents.get_editable_agent(session, user, agent_id)
    changes = body.model_dump(include=body.model_fields_set)
    _check(engine, changes)
    updated = await agents.update_agent(session, agent, changes)
    await engine.agents.changed(agent_id)
    return AgentOut.model_validate(updated)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(
    agent_id: AgentId, user: CurrentUser, session: SessionDep, engine: EngineDep
) -> None:
    """Delete your agent and what it remembered."""
    agent = await agents.get_editable_agent(session, user, agent_id)
    await agents.delete_agent(session, agent)
    await engine.agents.changed(agent_id)
