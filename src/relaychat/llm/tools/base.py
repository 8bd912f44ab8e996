"""The tool interface and ToolSet, which runs calls with timeouts and turns failures into results.

To add a tool, subclass `Tool`: give it a `name` (letters, digits, `_`, `-`), a
`description` the model reads, a JSON schema of its `parameters`, and an async `run`
that returns text for the model. Raise `ToolError` for a failure the model should see
and may recover from; any other exception is reported to the model as an internal error
and logged. A call that exceeds `timeout` seconds is cancelled and reported as such.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from relaychat.llm.types import ToolSpec

logger = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT = 30.0
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
MAX_RESULT_CHARS = 20_000


@dataclass(frozen=True)
class ToolContext:
    """Who a tool acts for: every tool is scoped to the conversation's owner."""

    user_id: str
    conversation_id: str
    generation_id: str
    agent_id: str | None = None
    # How many agent-to-agent messages led here; bounds send_message chains.
    hops: int = 0


class ToolError(Exception):
    """A failure the model should read (bad arguments, nothing found, …)."""


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False


class Tool(ABC):
    """One function an agent may call; see the module docstring."""

    name: str
    description: str
    parameters: dict[str, Any] = NO_PARAMETERS
    timeout: float = DEFAULT_TOOL_TIMEOUT

    @abstractmethod
    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """Do the work and return text for the model."""

    def spec(self) -> ToolSpec:
        """How the tool is described to a model."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)


class ToolSet:
    """The tools of one generation, by name; `missing` says why tools the agent names are
    not among them this time (their MCP server is down), for a model that calls one anyway."""

    def __init__(
        self, tools: Iterable[Tool] = (), missing: Mapping[str, str] | None = None
    ) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self._tools[tool.name] = tool
        self._missing = dict(missing or {})

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def tools(self) -> Mapping[str, Tool]:
        return self._tools

    def specs(self) -> list[ToolSpec]:
        """Every tool as the model sees it."""
        return [tool.spec() for tool in self._tools.values()]

    async def call(
        self, name: str, arguments: dict[str, Any] | None, context: ToolContext
    ) -> ToolOutcome:
        """Run one call; never raises for the tool's failures (cancellation passes through)."""
        tool = self._tools.get(name)
        if tool is None and name in self._missing:
            return ToolOutcome(
                f"error: {name} is unavailable: {self._missing[name]}", is_error=True
            )
        if tool is None:
            return ToolOutcome(f"error: there is no tool named {name!r}", is_error=True)
        if arguments is None:
            return ToolOutcome("error: the arguments were not a JSON object", is_error=True)
        try:
            async with asyncio.timeout(tool.timeout):
                content = await tool.run(arguments, context)
        except TimeoutError:
            return ToolOutcome(f"error: {name} timed out after {tool.timeout:g} s", is_error=True)
        except ToolError as exc:
            return ToolOutcome(f"error: {exc}", is_error=True)
        except Exception:
            logger.exception("tool %s failed", name)
            return ToolOutcome(f"error: {name} failed with an internal error", is_error=True)
        if len(content) > MAX_RESULT_CHARS:
            content = content[:MAX_RESULT_CHARS] + "\n[truncated]"
        return ToolOutcome(content)
