"""A stdio MCP server's stderr: passed on to relaychat's stderr, and its last lines kept.

When a server dies at start-up its stderr holds the only account of why (a missing
certificate, a package index it could not reach); the MCP session just sees the pipe close.
So the child writes into a pipe read here: each line goes to stderr as before, and the
tail is kept for the error, `GET /api/agents/tools` and the reply's metadata.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import os
import sys
from collections.abc import Iterable
from typing import TextIO

MAX_LINES = 20
MAX_LINE_CHARS = 500
# How long the tail waits for writers still holding the pipe (a grandchild) after the server.
DRAIN_TIMEOUT = 2.0
_REDACTED = "[redacted]"
# Shorter values are not worth hiding, and would garble unrelated text.
_MIN_SECRET = 4


class StderrTail(asyncio.Protocol):
    """Reads one server process's stderr; `open()` gives the file the child writes to."""

    def __init__(self, server: str, secrets: Iterable[str] = ()) -> None:
        self.server = server
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._lines: collections.deque[str] = collections.deque(maxlen=MAX_LINES)
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._transport: asyncio.ReadTransport | None = None
        self._closed = asyncio.Event()

    async def open(self) -> TextIO:
        """A pipe whose far end is read here; the caller closes the file once the child has it."""
        read_fd, write_fd = os.pipe()
        reader = os.fdopen(read_fd, "rb", buffering=0)
        try:
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.connect_read_pipe(lambda: self, reader)
        except BaseException:
            reader.close()
            os.close(write_fd)
            raise
        return os.fdopen(write_fd, "w", encoding="utf-8")

    def text(self) -> str:
        """The last lines read, secrets redacted; empty when the child wrote nothing."""
        lines = list(self._lines)
        if self._partial:
            lines.append(self._redact(self._partial)[:MAX_LINE_CHARS])
        return "\n".join(line for line in lines if line.strip())

    async def close(self) -> None:
        """Wait (bounded) until every writer is gone, then stop reading."""
        if self._transport is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await self._closed.wait()
        self._transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._feed(self._decoder.decode(data))

    def eof_received(self) -> bool | None:
        self._feed(self._decoder.decode(b"", final=True))
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    def _feed(self, text: str) -> None:
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            self._line(line)
        if len(self._partial) > MAX_LINE_CHARS:  # a line that never ends is still bounded
            self._line(self._partial)
            self._partial = ""

    def _line(self, line: str) -> None:
        line = self._redact(line.rstrip("\r"))[:MAX_LINE_CHARS]
        self._lines.append(line)
        # The operator still sees what the server says, as when it wrote to our stderr.
        with contextlib.suppress(OSError, ValueError):
            print(f"[mcp {self.server}] {line}", file=sys.stderr, flush=True)

    def _redact(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, _REDACTED)
        return line
