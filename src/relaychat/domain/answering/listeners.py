"""A reply handed, as it is generated, to the request in this process that asked for it.

The OpenAI-compatible API answers its caller with the reply itself. Reading it back from
the owner's event stream (replay from the `message.created` event, then live) lost replies
when the owner had many running: the event log is capped per user, so between the commit
and the subscription the request's events could roll off it. The reply runs in the process
that took the call (the runner launches it right after the commit), so the runner hands
its pieces here, in order, and the owner's tabs get their events from the bus as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from relaychat.resources import MessageView


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    """How the reply ended, once that is committed: the reply as stored (None when it was
    settled by someone else: a sweep, a deletion) and, when it failed, the code and detail."""

    message: MessageView | None
    error: str | None = None
    detail: str | None = None


# Text, a part (`tool_call`, `tool_result`) as stored, then one ReplyEnded.
Heard = str | dict[str, Any] | ReplyEnded


class ReplyListener:
    """The pieces of one reply, from the runner to one reader.

    Text the reader has not taken yet is joined into one piece: a reader that falls behind
    (a busy process, a slow client) catches up in fewer, larger chunks rather than
    queueing one per token. Nothing is ever dropped; a reply is bounded in size anyway.
    """

    __slots__ = ("_closed", "_pieces", "_waiter")

    def __init__(self) -> None:
        self._pieces: list[Heard] = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def text(self, delta: str) -> None:
        pieces = self._pieces
        if pieces and isinstance(pieces[-1], str):
            pieces[-1] += delta
        else:
            pieces.append(delta)
        self._wake()

    def part(self, part: dict[str, Any]) -> None:
        self._pieces.append(part)
        self._wake()

    def end(self, ended: ReplyEnded) -> None:
        """The reply's end, once committed; nothing comes after it."""
        if not self._closed:
            self._pieces.append(ended)
            self.close()

    def close(self) -> None:
        """No more pieces (a reader that saw no end knows the reply was cut off)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[Heard]:
        while True:
            if self._pieces:
                taken, self._pieces = self._pieces, []
                for piece in taken:
                    yield piece
                continue
            if self._closed:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
