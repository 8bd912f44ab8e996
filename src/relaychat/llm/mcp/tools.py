"""MCP tools as relaychat tools: names, schemas, and results turned into text for the model."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mcp import types

from relaychat.llm.tools.base import NO_PARAMETERS, Tool, ToolContext, ToolError

# How a call reaches the manager: (server, MCP tool name, arguments) -> text.
Caller = Callable[[str, str, dict[str, Any]], Awaitable[str]]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOOL_NAME = 64
SEPARATOR = "__"
# Beyond the call's own timeout: a restart and one retry may follow a broken connection.
RESTART_ALLOWANCE = 10.0


def tool_name(server: str, name: str) -> str:
    """`server__name`, with characters models reject replaced and the length capped."""
    safe = _UNSAFE.sub("_", name) or "tool"
    return f"{server}{SEPARATOR}{safe}"[:MAX_TOOL_NAME]


def server_of(name: str, servers: Iterable[str]) -> str | None:
    """The server among `servers` whose tool `name` is (`time` for `time__get_current_time`),
    or None. At most one matches: the configuration refuses server names that would make a
    tool name ambiguous."""
    return next((s for s in servers if name.startswith(f"{s}{SEPARATOR}")), None)


class McpTool(Tool):
    """One tool of an MCP server, called through the manager's shared session."""

    def __init__(self, server: str, tool: types.Tool, call: Caller, timeout_seconds: float) -> None:
        self.server = server
        self.remote_name = tool.name
        self.name = tool_name(server, tool.name)
        self.description = tool.description or tool.title or tool.name
        schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
        # Models require an object schema; an MCP tool may omit `properties`.
        self.parameters = {**NO_PARAMETERS, **schema} if schema else dict(NO_PARAMETERS)
        # The MCP call times out first (with a clearer message); this only bounds a restart.
        self.timeout = 2 * timeout_seconds + RESTART_ALLOWANCE
        self._call = call

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """Call the tool on its server."""
        return await self._call(self.server, self.remote_name, arguments)


def result_text(result: types.CallToolResult) -> str:
    """The text the model reads; an `isError` result raises ToolError with that text."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(part for part in parts if part)
    if result.is_error:
        raise ToolError(text or "the tool reported an error")
    return text


def _block_text(block: types.ContentBlock) -> str:
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        kind = "image" if isinstance(block, types.ImageContent) else "audio"
        return f"[{kind}: {block.mime_type}, {_decoded_size(block.data)} bytes, not shown]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.name} <{block.uri}>]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        mime = resource.mime_type or "binary"
        return f"[resource {resource.uri}: {mime}, {_decoded_size(resource.blob)} bytes, not shown]"
    return f"[{getattr(block, 'type', 'unknown')} content, not shown]"


def _decoded_size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return len(data)
