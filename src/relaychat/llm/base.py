"""The provider interface and the retry and timeout policy every adapter shares.

To add a provider, subclass `BaseAdapter` and implement three methods:

- `_attempt(request)`: one upstream call as an async generator of `StreamEvent`s, ending
  with `Finish`; yield `None` for upstream activity that carries no event (pings, role
  chunks), which keeps the idle timer from firing.
- `_translate(exc, started=...)`: the `ProviderError` for an SDK or transport exception,
  or None for exceptions that are bugs; `started` says the response had begun streaming.
- `_fetch_models()`: model ids from the upstream's model list.

An adapter whose SDK streams SSE subclasses `adapters.sse_stream.SSEAdapter` instead,
which implements `_attempt` from the SDK's response and a parser of the wire format.

`BaseAdapter.stream` owns the policy: retries only before the first event reaches the
caller (connection errors, 429, 5xx; honouring retry-after, bounded backoff), a deadline
for the first event, an idle timeout between chunks, and the guarantee that a stream
ends with exactly one `Finish` or raises a `ProviderError`. SDK retries are turned off.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from relaychat.llm.errors import (
    ProviderError,
    ProviderStreamBroken,
    ProviderTimeout,
    ProviderUnavailable,
)
from relaychat.llm.types import ChatRequest, Finish, StreamEvent

if TYPE_CHECKING:
    import httpx2

logger = logging.getLogger(__name__)


class ChatProvider(Protocol):
    """What the generation engine talks to; one instance per configured endpoint.

    Close a stream you stop reading early (`contextlib.aclosing`) to free the connection.
    """

    endpoint: str

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Events of one generation; ends with `Finish` or raises a `ProviderError`."""
        ...

    async def list_models(self) -> list[str]:
        """Model ids the upstream offers; raises a `ProviderError` on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections this provider opened."""
        ...


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to connect, to the first event, and between chunks."""

    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a failed start of a stream."""

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A longer retry-after is passed on to the caller rather than slept through.
    max_retry_after: float = 30.0

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds before retry number `attempt + 1`, or None to give up."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        backoff = min(self.max_delay, self.base_delay * 2.0**attempt)
        # Jitter spreads out the retries of many generations failing together.
        return backoff * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class AdapterOptions:
    """Connection settings of one endpoint, as an adapter needs them."""

    endpoint: str
    api_key: str | None = None
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Anthropic requires max_tokens; used when the request has none.
    default_max_tokens: int = 4096


def transport_timed_out(exc: BaseException, default: bool) -> bool:
    """Whether `exc` came of a timeout, judged by the aiohttp error under it if any.

    The SDKs' aiohttp transports map aiohttp's errors onto httpx2's, and the OpenAI SDK's
    maps every lost connection (a server that hung up) onto ConnectTimeout.
    """
    import aiohttp

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, aiohttp.ClientError):
            return isinstance(cause, TimeoutError)  # ServerTimeoutError and its kin
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return default


AttemptEvents = AsyncGenerator[StreamEvent | None, None]


class _IdleTimer:
    """The idle timeout between the reads of one stream, with one timer for the stream.

    A timeout scope per read (`asyncio.timeout`: a timer handle, scheduled and cancelled
    for every chunk) costs a good part of what relaying a token costs. This timer is
    re-armed only when it fires before the deadline, which moves with every read; when it
    finds the deadline passed, it cancels the task waiting for a read (`start` to `stop`),
    which `expired` then tells from any other cancellation (as `asyncio.timeout` does).
    The read itself is awaited by the caller, not through a method of this: a coroutine
    frame less for every token.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_waiter", "deadline", "limit")

    def __init__(self, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.limit = limit
        self.deadline = self._loop.time() + limit
        self._handle: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._expired = False

    def start(self) -> None:
        """A read begins: the timeout runs again from now, for the current task."""
        self.deadline = self._loop.time() + self.limit
        if self._handle is None:
            self._handle = self._loop.call_at(self.deadline, self._fire)
        task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()
        self._waiter = task

    def stop(self) -> None:
        """The read ended (between reads the timer cancels nothing)."""
        self._waiter = None

    def expired(self) -> bool:
        """Whether the cancellation the waiting task just got came of this timeout (then
        it is taken back), rather than from someone else."""
        task = self._waiter
        if self._expired and task is not None and task.uncancel() <= self._cancelling:
            self._expired = False
            return True
        return False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._waiter is None:
            return  # between reads: the next `start` arms the timer again
        if self._loop.time() < self.deadline:
            self._handle = self._loop.call_at(self.deadline, self._fire)
            return
        self._expired = True
        self._waiter.cancel()


class BaseAdapter(ABC):
    """Shared policy around one provider's wire protocol; see the module docstring."""

    provider: ClassVar[str]

    def __init__(
        self, options: AdapterOptions, *, http_client: httpx2.AsyncClient | None = None
    ) -> None:
        self.options = options
        self.endpoint = options.endpoint
        self.timeouts = options.timeouts
        self.retry = options.retry
        # Injected clients belong to the caller; we close only what we create.
        self._http_client = http_client

    # -- for subclasses --------------------------------------------------------------------

    @abstractmethod
    def _attempt(self, request: ChatRequest) -> AttemptEvents:
        """One upstream call; see the module docstring."""

    @abstractmethod
    def _translate(self, exc: Exception, *, started: bool) -> ProviderError | None:
        """The error to raise for `exc`, or None to let it through."""

    @abstractmethod
    async def _fetch_models(self) -> list[str]:
        """Model ids from the upstream."""

    @contextmanager
    def _upstream(self, *, started: bool) -> Iterator[None]:
        """Turn SDK and transport exceptions raised inside into `ProviderError`s."""
        try:
            yield
        except ProviderError:
            raise
        except Exception as exc:
            error = self._translate(exc, started=started)
            if error is None:
                raise
            raise error from exc

    def _connection_error(self, *, timed_out: bool, started: bool) -> ProviderError:
        """The error for a connection that timed out, failed, or broke off mid-stream."""
        if timed_out:
            return ProviderTimeout("The provider connection timed out", endpoint=self.endpoint)
        if started:
            return ProviderStreamBroken(
                "The connection closed in the middle of the stream",
                retryable=True,
                endpoint=self.endpoint,
            )
        return ProviderUnavailable("Could not connect to the provider", endpoint=self.endpoint)

    def _transport_error(self, exc: Exception, *, started: bool) -> ProviderError | None:
        """The error for a raw transport exception that an SDK let through, else None.

        aiohttp's own errors too: a body read from aiohttp straight (`sse_stream.body_chunks`)
        raises them unmapped.
        """
        import aiohttp
        import httpx2

        if isinstance(exc, aiohttp.ClientError):
            return self._connection_error(timed_out=isinstance(exc, TimeoutError), started=started)
        if not isinstance(exc, httpx2.TransportError):
            return None
        # A TransportError too; an aiohttp transport's mapping is checked against its cause.
        timed_out = transport_timed_out(exc, isinstance(exc, httpx2.TimeoutException))
        return self._connection_error(timed_out=timed_out, started=started)

    def _sdk_timeout(self) -> httpx2.Timeout:
        """A transport timeout that only backs up our own, finer deadlines."""
        import httpx2

        t = self.timeouts
        return httpx2.Timeout(
            connect=t.connect, read=t.first_token + t.idle, write=t.idle, pool=t.connect
        )

    # -- the interface ---------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Events of one generation; see `ChatProvider.stream`."""
        events, first = await self._open(request)
        idle = _IdleTimer(self.timeouts.idle)
        try:
            yield first
            finished = isinstance(first, Finish)
            while not finished:
                # Each read (heartbeats too) within the idle timeout of the last; inline
                # rather than a helper's, as this runs for every token.
                idle.start()
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    raise ProviderStreamBroken(
                        "The stream ended before the provider finished", endpoint=self.endpoint
                    ) from None
                except asyncio.CancelledError:
                    if idle.expired():
                        raise ProviderTimeout(
                            f"No answer for {idle.limit:g}s between chunks",
                            endpoint=self.endpoint,
                        ) from None
                    raise
                finally:
                    idle.stop()
                if event is None:
                    continue
                finished = isinstance(event, Finish)
                yield event
        finally:
            idle.close()
            await events.aclose()

    async def list_models(self) -> list[str]:
        """Model ids the upstream offers, sorted."""
        limit = self.timeouts.connect + self.timeouts.idle
        try:
            async with asyncio.timeout(limit):
                with self._upstream(started=False):
                    models = await self._fetch_models()
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"Listing models took longer than {limit:g}s", endpoint=self.endpoint
            ) from exc
        return sorted(set(models))

    @abstractmethod
    async def aclose(self) -> None:
        """Release the SDK client and the connections it opened itself."""

    # -- policy ----------------------------------------------------------------------------

    async def _open(self, request: ChatRequest) -> tuple[AttemptEvents, StreamEvent]:
        """Start the stream and wait for its first event, retrying while nothing was shown."""
        attempt = 0
        while True:
            events = self._attempt(request)
            try:
                first = await self._first(events)
            except ProviderError as error:
                await events.aclose()
                delay = self.retry.delay(attempt, error)
                if delay is None:
                    raise
                attempt += 1
                logger.info(
                    "endpoint %s: %s, retry %d in %.2fs", self.endpoint, error.code, attempt, delay
                )
                await asyncio.sleep(delay)
                continue
            except BaseException:
                await events.aclose()
                raise
            if first is None:
                await events.aclose()
                raise ProviderStreamBroken(
                    "The stream ended before any output", endpoint=self.endpoint
                )
            return events, first

    async def _first(self, events: AttemptEvents) -> StreamEvent | None:
        """The first event within the first-token timeout; heartbeats do not restart it."""
        limit = self.timeouts.first_token
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                item = None
                while item is None:
                    item = await anext(events)
        except StopAsyncIteration:
            return None
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise ProviderTimeout(
                f"No answer for {limit:g}s before the first token", endpoint=self.endpoint
            ) from exc
        return item
