"""Open event streams end as soon as the server is told to stop.

On SIGINT or SIGTERM uvicorn stops accepting connections, then waits for the open ones to
finish: an event stream never does, so shutdown hung until the grace period ran out and
uvicorn cancelled the stream mid-wait, printing a CancelledError traceback. Chained in
front of uvicorn's own handler, ours first ends every stream of the process (clients
reconnect, with Last-Event-ID, to a server that is up), so the connections close at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_exit_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Run `callback` in this event loop when an exit signal arrives, before the handler
    already installed (uvicorn's); returns a function putting that handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach the main thread only (an app under test)
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}
    for number in EXIT_SIGNALS:
        handler = signal.getsignal(number)
        if not callable(handler):
            continue  # no server there to stop gracefully

        def chained(
            signum: int, frame: FrameType | None, _then: Callable[..., Any] = handler
        ) -> None:
            loop.call_soon_threadsafe(callback)
            _then(signum, frame)

        previous[number] = handler
        signal.signal(number, chained)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore
