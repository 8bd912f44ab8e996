"""MCP test fixtures: real servers only (mcp-server-time over stdio, an SDK server over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mcp import http_server


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """One HTTP MCP server shared by a module's tests."""
    with http_server() as port:
        yield port
