"""`relaychat agents`: create, list and delete agents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.cli._common import console, error_exit, load_settings, run_in_session, table
from relaychat.domain.accounts.users import find_user_by_email
from relaychat.domain.agent.agents import check_agent_fields, create_agent
from relaychat.domain.agent.toolbox import local_tool_names
from relaychat.errors import UserNotFound
from relaychat.llm.mcp.config import load_mcp_config, mcp_servers_of
from relaychat.llm.registry import load_registry
from relaychat.statuses import AgentVisibility
from relaychat.storage.models import Agent, User

agents_app = typer.Typer(help="Manage agents.")


@agents_app.command("create")
def agents_create(
    owner: Annotated[str, typer.Option(help="Email of the owning user.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    endpoint: Annotated[str, typer.Option(help="LLM endpoint from relaychat.yaml.")],
    model: Annotated[str | None, typer.Option(help="Model (default: the endpoint's).")] = None,
    instructions: Annotated[str | None, typer.Option(help="System instructions.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    tool: Annotated[
        list[str] | None,
        typer.Option(
            help="A tool it may call, e.g. calculator or time__get_current_time (repeat)."
        ),
    ] = None,
    mcp_server: Annotated[
        list[str] | None, typer.Option(help="An MCP server whose tools it may call (repeat).")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="Usable by every user.")] = False,
) -> None:
    """Create an agent; prints its id."""
    settings = load_settings()
    fields: dict[str, Any] = {
        "name": name,
        "endpoint": endpoint,
        "model": model,
        "instructions": instructions,
        "description": description,
        "tools": tool or [],
        "mcp_servers": mcp_server or [],
        "visibility": AgentVisibility.PUBLIC if public else AgentVisibility.PRIVATE,
    }

    async def _create(session: AsyncSession) -> Agent:
        registry = load_registry(settings.config_path)
        try:
            check_agent_fields(
                fields,
                endpoints=registry.names(),
                tools=local_tool_names(),
                servers=mcp_servers_of(load_mcp_config(settings.config_path)),
            )
        finally:
            await registry.aclose()
        user = await find_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"no user with email {owner}")
        return await create_agent(session, user, fields)

    agent = run_in_session(settings, _create)
    typer.echo(f"created {agent.visibility} agent {agent.name} ({agent.id})")


@agents_app.command("list")
def agents_list() -> None:
    """Print every agent as a table."""

    async def _rows(session: AsyncSession) -> Sequence[Row[Agent, str]]:
        query = select(Agent, User.email).join(User, User.id == Agent.user_id)
        return (await session.execute(query.order_by(Agent.created_at))).all()

    output = table("id", "name", "owner", "endpoint", "model", "tools", "visibility")
    for agent, email in run_in_session(load_settings(), _rows):
        output.add_row(
            agent.id,
            agent.name,
            email,
            agent.endpoint,
            agent.model or "",
            ", ".join([*agent.tools, *(f"mcp:{s}" for s in agent.mcp_servers)]),
            agent.visibility,
        )
    console.print(output)


@agents_app.command("delete")
def agents_delete(agent_id: str) -> None:
    """Delete an agent and what it remembered."""

    async def _delete(session: AsyncSession) -> bool:
        agent = await session.get(Agent, agent_id)
        if agent is None:
            return False
        await session.delete(agent)
        await session.commit()
        return True

    if not run_in_session(load_settings(), _delete):
        error_exit(f"no agent {agent_id}")
    typer.echo(f"deleted {agent_id}")
