"""How MCP tools and their results look to a model."""

from __future__ import annotations

import base64

import pytest
from mcp import types

from relaychat.llm.mcp.tools import result_text, server_of, tool_name
from relaychat.llm.tools.base import ToolError


def test_tool_names_are_prefixed_sanitised_and_capped() -> None:
    assert tool_name("github", "create_issue") == "github__create_issue"
    assert tool_name("fs", "read.file/v2") == "fs__read_file_v2"
    long = tool_name("s" * 30, "t" * 60)
    assert len(long) == 64
    assert long.startswith("s" * 30 + "__")


def test_a_tool_name_points_to_its_server() -> None:
    servers = ["time", "my-fs", "a_b"]
    assert server_of("time__get_current_time", servers) == "time"
    assert server_of("my-fs__read__file", servers) == "my-fs"
    assert server_of("a_b__x", servers) == "a_b"
    # Not a server's tool: a built-in, another server's, or a server's name alone.
    for name in ("calculator", "ghost__x", "time", "time_x", "a__b__x"):
        assert server_of(name, servers) is None


def test_text_parts_are_joined_and_other_parts_described() -> None:
    png = base64.b64encode(b"\x89PNG....").decode()
    result = types.CallToolResult(
        content=[
            types.TextContent(text="first"),
            types.ImageContent(data=png, mime_type="image/png"),
            types.ResourceLink(uri="file:///a.txt", name="a.txt"),
            types.EmbeddedResource(
                resource=types.TextResourceContents(uri="file:///b.txt", text="embedded")
            ),
            types.EmbeddedResource(
                resource=types.BlobResourceContents(uri="file:///c.bin", blob=png)
            ),
            types.TextContent(text="last"),
        ]
    )

    assert result_text(result).splitlines() == [
        "first",
        "[image: image/png, 8 bytes, not shown]",
        "[resource link: a.txt <file:///a.txt>]",
        "embedded",
        "[resource file:///c.bin: binary, 8 bytes, not shown]",
        "last",
    ]


def test_structured_content_alone_is_sent_as_json() -> None:
    result = types.CallToolResult(content=[], structured_content={"sum": 3})

    assert result_text(result) == '{"sum": 3}'


def test_an_error_result_raises_with_its_text() -> None:
    with pytest.raises(ToolError, match=r"^no such file$"):
        result_text(
            types.CallToolResult(content=[types.TextContent(text="no such file")], is_error=True)
        )
    with pytest.raises(ToolError, match="reported an error"):
        result_text(types.CallToolResult(content=[], is_error=True))
