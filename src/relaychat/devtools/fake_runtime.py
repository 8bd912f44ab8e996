"""Per-server state of the fake upstream and the pacing and failure machinery of its streams."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from relaychat.devtools.fake_config import FailureKind, FakeConfig, FakeInput, Plan, make_plan

HTTP_FAILURES: dict[FailureKind, int] = {
    "auth": 401,
    "bad_request": 400,
    "rate_limit": 429,
    "server_error": 500,
    "unavailable": 503,
}
MID_STREAM_FAILURES = frozenset({"stall", "cut", "garbage", "error_event"})


class StreamCut(Exception):
    """Raised inside a response body so the server drops the connection mid-response."""


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake received it, for tests to inspect what an adapter sent."""

    path: str
    headers: dict[str, str]
    body: Any


class FakeState:
    """Everything one fake server remembers; nothing is shared between servers."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.requests: deque[RecordedRequest] = deque(maxlen=500)
        self._attempts: Counter[str] = Counter()
        self._closing: asyncio.Event | None = None

    @property
    def closing(self) -> asyncio.Event:
        """Set when the server shuts down, so hanging responses let go."""
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    def authorized(self, request: Request) -> bool:
        """Whether the request carries a key, and the configured one if there is one."""
        key = request_key(request)
        return key is not None and self.config.api_key in (None, key)

    async def read(self, request: Request) -> Any:
        """The JSON body, recorded; None when the body is not JSON."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.record(request, body)
        return body

    def record(self, request: Request, body: Any = None) -> None:
        """Remember a request for tests to inspect."""
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))

    def failure(self, config: FakeConfig, path: str, body: Any) -> FailureKind | None:
        """The failure to act out now; with `fail_times`, only the first N identical requests."""
        if config.fail is None or config.fail_times is None:
            return config.fail
        key = (
            config.key
            or hashlib.sha256((path + json.dumps(body, sort_keys=True)).encode()).hexdigest()
        )
        self._attempts[key] += 1
        return config.fail if self._attempts[key] <= config.fail_times else None


def request_key(request: Request) -> str | None:
    """The API key, from any header a provider's SDK puts it in."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    # Recent Anthropic SDKs send the key as a bearer token, older ones as x-api-key.
    for header in ("x-api-key", "api-key", "x-goog-api-key"):
        if request.headers.get(header):
            return request.headers[header]
    return None


async def pause(milliseconds: int) -> None:
    """Sleep, unless there is nothing to wait for."""
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


@dataclass(frozen=True)
class Frame:
    """One SSE frame; `token` frames are paced and counted for mid-stream failures."""

    data: str
    token: bool = False


@dataclass(frozen=True)
class FrameScript:
    """A whole stream in a wire format: opening frames, body, closing frames, and misfits."""

    head: list[str]
    body: list[Frame]
    tail: list[str]
    error_frame: str
    garbage_frame: str


async def play(
    script: FrameScript, config: FakeConfig, failure: FailureKind | None, state: FakeState
) -> AsyncIterator[str]:
    """The frames of `script`, paced by the config, with the failure acted out."""
    if failure == "hang":
        await state.closing.wait()
        raise StreamCut
    await pause(config.ttft_ms)
    for data in script.head:
        yield data
    breaks = failure in MID_STREAM_FAILURES
    sent = 0
    for frame in script.body:
        if frame.token:
            if breaks and sent == config.fail_after_tokens:
                break
            if sent:
                await pause(config.token_delay_ms)
            sent += 1
        yield frame.data
    if not breaks:
        for data in script.tail:
            yield data
        return
    if failure == "stall":
        await state.closing.wait()
        raise StreamCut
    if failure == "cut":
        raise StreamCut
    yield script.error_frame if failure == "error_event" else script.garbage_frame


def sse_response(frames: AsyncIterator[str]) -> StreamingResponse:
    """An event stream of the frames."""
    return StreamingResponse(
        frames, media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


async def _dropped() -> AsyncIterator[bytes]:
    raise StreamCut
    yield b""  # pragma: no cover - makes this an async generator


async def until_gone(request: Request, state: FakeState) -> None:
    """Wait until the client disconnects or the server shuts down."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waiters = {asyncio.ensure_future(disconnected()), asyncio.ensure_future(state.closing.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def whole_response_failure(
    failure: FailureKind | None, request: Request, state: FakeState
) -> Response | None:
    """Act out a mid-stream failure on a non-streaming request; None when there is none."""
    if failure in ("hang", "stall"):
        await until_gone(request, state)
        return StreamingResponse(_dropped(), media_type="application/json")
    if failure == "cut":
        return StreamingResponse(_dropped(), media_type="application/json")
    if failure == "garbage":
        return Response(b"this is not json", media_type="application/json")
    return None


def retry_after_headers(config: FakeConfig) -> dict[str, str]:
    """A 429's headers: `retry-after` in whole seconds, and OpenAI's `retry-after-ms`.

    relaychat reads `retry-after-ms` from any provider, which keeps tests fast.
    """
    return {
        "retry-after": str(math.ceil(config.retry_after_ms / 1000)),
        "retry-after-ms": str(config.retry_after_ms),
    }


def list_models(
    request: Request,
    state: FakeState,
    failure_response: Callable[[FailureKind, FakeConfig], JSONResponse],
    models_body: Callable[[FakeConfig], dict[str, Any]],
) -> JSONResponse:
    """The model list in a format's shape, once the key is checked."""
    state.record(request)
    if not state.authorized(request):
        return failure_response("auth", state.config)
    return JSONResponse(models_body(state.config))


def body_digest(body: Any, length: int) -> str:
    """The first `length` hex digits of a digest of a JSON body, for deterministic ids."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:length]


async def answer(
    request: Request,
    state: FakeState,
    config: FakeConfig,
    body: Any,
    request_input: FakeInput,
    *,
    streaming: bool,
    script: Callable[[Plan], FrameScript],
    whole: Callable[[Plan], Any],
    failure_response: Callable[[FailureKind, FakeConfig], Response],
    error_event: FailureKind,
) -> Response:
    """The reply to a parsed request, whatever the wire format.

    An HTTP failure is answered at once; otherwise the plan streams as `script` renders it,
    or comes whole as `whole` renders it, after as long as streaming it would take. A whole
    response cannot act out `error_event`, so it fails with the HTTP error `error_event`.
    """
    failure = state.failure(config, request.url.path, body)
    if failure is not None and failure in HTTP_FAILURES:
        return failure_response(failure, config)
    plan = make_plan(config, request_input)
    if streaming:
        return sse_response(play(script(plan), config, failure, state))
    dropped = await whole_response_failure(failure, request, state)
    if dropped is not None:
        return dropped
    if failure == "error_event":
        return failure_response(error_event, config)
    await pause(config.ttft_ms + config.token_delay_ms * max(0, len(plan.tokens) - 1))
    return JSONResponse(whole(plan))
