"""A deterministic fake LLM upstream speaking OpenAI's, Anthropic's and Gemini's wire formats.

Routes
    GET  /v1/models                                 OpenAI's list; Anthropic's with an
                                                    `anthropic-version` header, Google's with
                                                    `x-goog-api-key` (also GET /v1beta/models)
    POST /v1/chat/completions                       OpenAI, streaming (SSE, `[DONE]`, usage
                                                    chunk with `stream_options.include_usage`)
                                                    and not
    POST /openai/deployments/{name}/chat/completions  the same for Azure
    POST /v1/messages                               Anthropic Messages, streaming and not
    POST /v1[beta]/models/{model}:streamGenerateContent  Gemini, SSE (`?alt=sse`); function
    POST /v1[beta]/models/{model}:generateContent        calls arrive whole, with a signature

Every route wants an API key, in whichever header the SDKs use (`Authorization: Bearer`,
`x-api-key`, `api-key`, `x-goog-api-key`); with `api_key` configured, exactly that one.

The reply is `reply` (a fixed sentence by default) or, with `echo`, the last user text,
streamed one whitespace-separated word (with its trailing space) per chunk. Usage counts
words the same way; with `usage: false` there is none (OpenAI and Gemini leave it out,
Anthropic, whose format requires it, says zeros). `max_tokens` below the reply length
truncates it, with finish reason "length" (Anthropic "max_tokens").

Configuration is a `FakeConfig` (constructor, `running_fake_llm(**fields)`, or CLI flags),
and any field can be overridden for one request by a directive on the first line of the
last user message (the line is removed before echoing):

    !fake {"fail": "rate_limit", "fail_times": 1}
    !fake {"echo": true, "ttft_ms": 200, "token_delay_ms": 20}

Failures (`fail`): auth (401), bad_request (400), rate_limit (429 with `retry-after` and
`retry-after-ms` from `retry_after_ms`), server_error (500), unavailable (503; Anthropic
529 overloaded), hang (headers, then silence), stall (`fail_after_tokens` tokens, then
silence), cut (tokens, then the connection drops without the end of the stream), garbage
(tokens, then a data line that is not JSON), error_event (tokens, then OpenAI's or
Gemini's `data: {"error": …}` or Anthropic's `event: error`). Gemini says a bad key with
400 `API_KEY_INVALID` and a rate limit with a `RetryInfo` delay, as the real API does.
With `fail_times: N` only the first N identical requests fail (counted per server, by
`key` or else by a digest of path and body), so "429, then success" can be tested.

Tool calls: `script` is a list of assistant turns, each a string (text) or
`{"text": …, "tool_calls": [{"name": …, "arguments": {…}, "id": optional}]}`. The fake picks
turn N, where N is the number of assistant messages after the last user message with text
(Anthropic user turns that carry only tool results don't count), so an agent loop walks
the script while each new user message starts it over; past its end the normal reply is
sent. Tool calls stream as OpenAI `delta.tool_calls` with `arguments` in `arg_chunk_chars`
fragments and finish reason "tool_calls", or Anthropic `tool_use` blocks with
`input_json_delta` fragments and stop reason "tool_use", or whole Gemini `functionCall`
parts with a `thoughtSignature`. Ids are `call_fake_<turn>_<i>` / `toolu_fake_<turn>_<i>`
unless given; Gemini calls carry an id only when the script gives one.

In tests, `async with running_fake_llm(reply="hi") as fake:` serves on an ephemeral
loopback port in the running event loop: point OpenAI SDKs at `fake.openai_base_url`,
Anthropic and Google SDKs at `fake.url`, and read `fake.requests` to see what was sent. Each server
keeps its own state, so concurrent tests don't interfere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from relaychat.devtools import fake_anthropic, fake_google, fake_openai
from relaychat.devtools.fake_config import (
    DEFAULT_REPLY,
    FakeConfig,
    ScriptToolCall,
    ScriptTurn,
)
from relaychat.devtools.fake_runtime import FakeState, RecordedRequest, StreamCut, list_models

__all__ = [
    "DEFAULT_REPLY",
    "FakeConfig",
    "FakeLLM",
    "RecordedRequest",
    "ScriptToolCall",
    "ScriptTurn",
    "create_fake_llm_app",
    "quiet_stream_cuts",
    "running_fake_llm",
]


def create_fake_llm_app(config: FakeConfig | None = None) -> FastAPI:
    """The fake upstream as an ASGI app; its `FakeState` is at `app.state.fake`."""
    state = FakeState(config or FakeConfig())
    app = FastAPI(title="relaychat fake LLM", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.fake = state
    app.include_router(fake_openai.router(state))
    app.include_router(fake_anthropic.router(state))
    app.include_router(fake_google.router(state))

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        wire = (
            (fake_google.failure_response, fake_google.models_body)
            if "x-goog-api-key" in request.headers
            else (fake_anthropic.failure_response, fake_anthropic.models_body)
            if "anthropic-version" in request.headers
            else (fake_openai.failure_response, fake_openai.models_body)
        )
        return list_models(request, state, *wire)

    return app


class _DropStreamCuts(logging.Filter):
    """Hides the traceback uvicorn logs when a `cut` scenario drops a connection on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, StreamCut):
                return False
            if isinstance(exc, BaseExceptionGroup):
                return not any(isinstance(e, StreamCut) for e in _leaves(exc))
            exc = exc.__cause__ or exc.__context__
        return True


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


_filter = _DropStreamCuts()


def quiet_stream_cuts() -> None:
    """Keep deliberate connection drops out of uvicorn's error log (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _filter not in logger.filters:
        logger.addFilter(_filter)


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class FakeLLM:
    """A running fake upstream: where to reach it, and what it was sent."""

    url: str
    app: FastAPI

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI SDKs (they add `/chat/completions`)."""
        return f"{self.url}/v1"

    @property
    def state(self) -> FakeState:
        """The server's state; its `config` may be replaced between requests."""
        state: FakeState = self.app.state.fake
        return state

    @property
    def requests(self) -> deque[RecordedRequest]:
        """Requests received so far, oldest first."""
        return self.state.requests


@contextlib.asynccontextmanager
async def running_fake_llm(
    config: FakeConfig | None = None, **fields: Any
) -> AsyncIterator[FakeLLM]:
    """Serve the fake on 127.0.0.1 and an ephemeral port in this event loop until exit."""
    if config is None:
        config = FakeConfig(**fields)
    elif fields:
        config = config.model_copy(update=fields)
    app = create_fake_llm_app(config)
    quiet_stream_cuts()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _InProcessServer(
        uvicorn.Config(
            app,
            lifespan="off",
            ws="none",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the fake LLM server stopped while starting")
            await asyncio.sleep(0.005)
        yield FakeLLM(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        app.state.fake.closing.set()
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()


def serve_fake_llm(host: str, port: int, config: FakeConfig) -> None:
    """Serve the fake in the foreground (the `relaychat dev fake-llm` command)."""
    quiet_stream_cuts()
    app = create_fake_llm_app(config)
    uvicorn.run(app, host=host, port=port, ws="none", timeout_graceful_shutdown=5)
