"""`relaychat doctor`: the checks of domain/operations/doctor.py as a table, with a verdict
and an exit code a script can act on (0 ok or warnings only, 1 when something fails)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from relaychat.cli._common import one_line, table
from relaychat.crypto import SecretBox
from relaychat.domain.operations.doctor import Check, Report, Status, examine
from relaychat.llm.config import ConfigError, load_config
from relaychat.llm.mcp import McpManager
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.llm.registry import EndpointRegistry
from relaychat.settings import PlaceholderSecretError, Settings, get_settings
from relaychat.storage.db import create_engine

STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}
VERDICT = {
    Status.OK: "healthy",
    Status.WARN: "works, with warnings",
    Status.FAIL: "something is broken",
}


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check settings, database, Redis, endpoints, MCP servers, webhook targets, Twilio
    channels and disk."""
    try:
        settings = get_settings()
    except (ValidationError, PlaceholderSecretError) as exc:
        # Nothing else can be checked without settings: this is the one finding.
        report = Report([Check("settings", "environment", Status.FAIL, one_line(exc))])
    else:
        report = asyncio.run(_examine(settings))
    if as_json:
        body = {"verdict": report.verdict, "checks": [asdict(c) for c in report.checks]}
        typer.echo(json.dumps(body, indent=2))
    else:
        _print(report)
    raise typer.Exit(1 if report.verdict == Status.FAIL else 0)


async def _examine(settings: Settings) -> Report:
    try:
        # Not load_registry: it logs each skipped endpoint, which the report already lists.
        registry = EndpointRegistry.from_config(load_config(settings.config_path))
        servers = load_mcp_config(settings.config_path)
    except ConfigError:
        # The config check reports the error itself; the rest is checked without it.
        registry, mcp = EndpointRegistry([]), McpManager({})
    else:
        mcp = McpManager(servers, disabled=servers.disabled())
    engine = create_engine(settings.effective_database_url)
    try:
        return await examine(settings, engine, registry, mcp, _secrets(settings))
    finally:
        await asyncio.gather(registry.aclose(), mcp.aclose(), engine.dispose())


def _secrets(settings: Settings) -> SecretBox | None:
    """The server's encryption keys, or None when it has none yet: the doctor looks, it
    does not make a key file (that is the first `serve`'s to do)."""
    if settings.encryption_key or (settings.data_dir / "encryption_key").exists():
        return SecretBox(settings.resolved_encryption_keys())
    return None


def _print(report: Report) -> None:
    output = table("area", "check", "status", "detail")
    for check in report.checks:
        colour = STYLE[check.status]
        output.add_row(check.area, check.name, f"[{colour}]{check.status}[/]", check.detail)
    console = Console()
    console.print(output)
    verdict = report.verdict
    console.print(f"[bold {STYLE[verdict]}]{VERDICT[verdict]}[/]")
