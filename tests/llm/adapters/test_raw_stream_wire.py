"""The OpenAI and Anthropic adapters against a scripted upstream that controls every read.

The fake upstream speaks well-formed SSE in whole frames; real servers split frames
across reads, end lines with CRLF, send keep-alive comments and compress.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from relaychat.llm.adapters.anthropic_messages import AnthropicAdapter
from relaychat.llm.adapters.openai_chat import OpenAIAdapter
from relaychat.llm.base import AdapterOptions, RetryPolicy, Timeouts
from relaychat.llm.errors import ProviderError, ProviderStreamBroken, ProviderUnavailable
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    StreamEvent,
    TextDelta,
    Usage,
    collect,
)

# A step of a response body: bytes sent as one write, or seconds to wait.
Step = bytes | float


@dataclass
class Script:
    steps: list[Step]
    gzip: bool = False
    # End the body properly (chunked terminator) or just close the connection.
    clean_end: bool = True


@dataclass
class ScriptedUpstream:
    """An HTTP/1.1 server answering each POST with the next script, over keep-alive."""

    scripts: list[Script] = field(default_factory=list)
    connections: int = 0
    requests: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                if not await self.answer(self.scripts.pop(0), writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, script: Script, writer: asyncio.StreamWriter) -> bool:
        headers = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        if script.gzip:
            headers += b"content-encoding: gzip\r\n"
        writer.write(headers + b"transfer-encoding: chunked\r\n\r\n")
        compressor = zlib.compressobj(wbits=31)
        for step in script.steps:
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            if script.gzip:
                step = compressor.compress(step) + compressor.flush(zlib.Z_SYNC_FLUSH)
            writer.write(b"%x\r\n%s\r\n" % (len(step), step))
            await writer.drain()
        if not script.clean_end:
            return False
        if script.gzip:
            tail = compressor.flush()
            writer.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    scripted = ScriptedUpstream()
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.port = server.sockets[0].getsockname()[1]
    async with server:
        yield scripted


def options(upstream: ScriptedUpstream, path: str) -> AdapterOptions:
    return AdapterOptions(
        endpoint="scripted",
        api_key="k",
        base_url=f"http://127.0.0.1:{upstream.port}{path}",
        timeouts=Timeouts(connect=5.0, first_token=5.0, idle=0.3),
        retry=RetryPolicy(max_retries=0),
    )


@pytest.fixture(params=["aiohttp", "httpx2"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx2.AsyncClient | None]:
    """None: the client an adapter makes for itself (aiohttp underneath); or plain httpx2."""
    if request.param == "aiohttp":
        yield None
        return
    async with httpx2.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
async def adapter(
    upstream: ScriptedUpstream, http: httpx2.AsyncClient | None
) -> AsyncIterator[OpenAIAdapter]:
    made = OpenAIAdapter(options(upstream, "/v1"), http_client=http)
    yield made
    await made.aclose()


@pytest.fixture
async def claude(
    upstream: ScriptedUpstream, http: httpx2.AsyncClient | None
) -> AsyncIterator[AnthropicAdapter]:
    made = AnthropicAdapter(options(upstream, ""), http_client=http)
    yield made
    await made.aclose()


REQUEST = ChatRequest(model="m", messages=[ChatMessage(role="user", content="hi")])


def chunk(delta: dict[str, Any], finish: str | None = None, *, crlf: bool = False) -> bytes:
    payload = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    end = b"\r\n\r\n" if crlf else b"\n\n"
    return b"data: " + json.dumps(payload).encode() + end


USAGE = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
DONE = b"data: [DONE]\n\n"


def body(*tokens: str, crlf: bool = False) -> bytes:
    frames = [chunk({"role": "assistant", "content": ""}, crlf=crlf)]
    frames += [chunk({"content": token}, crlf=crlf) for token in tokens]
    frames += [chunk({}, "stop", crlf=crlf), USAGE, DONE]
    return b"".join(frames)


async def events_until_error(
    adapter: OpenAIAdapter,
) -> tuple[list[StreamEvent], ProviderError | None]:
    seen: list[StreamEvent] = []
    try:
        async for event in adapter.stream(REQUEST):
            seen.append(event)
    except ProviderError as exc:
        return seen, exc
    return seen, None


@pytest.mark.parametrize("size", [1, 5, 64])
async def test_frames_split_across_reads_with_crlf_and_comments(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter, size: int
) -> None:
    whole = b": hello\r\n\r\n" + body("Hello", " wor", "ld", crlf=True)
    pieces: list[Step] = [whole[i : i + size] for i in range(0, len(whole), size)]
    upstream.scripts = [Script(pieces), Script(pieces)]

    for _ in range(2):
        completion = await collect(adapter.stream(REQUEST))

        assert completion.text == "Hello world"
        assert completion.finish_reason == "stop"
        assert completion.usage == Usage(prompt_tokens=3, completion_tokens=2)
    assert upstream.connections == 1, "the body is read to its end, so the connection is reused"


async def test_gzip_compressed_stream(upstream: ScriptedUpstream, adapter: OpenAIAdapter) -> None:
    upstream.scripts = [Script([chunk({"content": "zip"}), 0.01, body("ped")], gzip=True)]

    assert (await collect(adapter.stream(REQUEST))).text == "zipped"


async def test_keep_alive_comments_keep_the_idle_timer_from_firing(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    keep_alive: list[Step] = [b": keep-alive\n\n", 0.1] * 6  # 0.6s, twice the idle timeout
    upstream.scripts = [Script([chunk({"content": "a"}), *keep_alive, body("b")])]

    assert (await collect(adapter.stream(REQUEST))).text == "ab"


async def test_data_over_several_lines_is_one_frame(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    frame = b'data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "two lines"}}]}\n\n'
    upstream.scripts = [Script([frame, body()])]

    assert (await collect(adapter.stream(REQUEST))).text == "two lines"


async def test_frames_after_done_are_ignored(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    upstream.scripts = [Script([body("only") + chunk({"content": " not this"})])]

    assert (await collect(adapter.stream(REQUEST))).text == "only"


async def test_finish_without_done_is_enough(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    upstream.scripts = [Script([chunk({"content": "x"}), chunk({}, "length")])]

    completion = await collect(adapter.stream(REQUEST))

    assert (completion.text, completion.finish_reason) == ("x", "length")


async def test_error_frame_in_the_same_read_as_a_token_comes_after_it(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    error = b'data: {"error": {"message": "Overloaded", "type": "server_error"}}\n\n'
    upstream.scripts = [Script([chunk({"content": "partial"}) + error])]

    events, error_raised = await events_until_error(adapter)

    assert events == [TextDelta(text="partial")]
    assert isinstance(error_raised, ProviderUnavailable)
    assert error_raised.detail == "Overloaded"


@pytest.mark.parametrize("clean_end", [True, False])
async def test_body_ending_without_a_finish_is_broken(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter, clean_end: bool
) -> None:
    # A frame cut in the middle of its line, then the end of the body or of the connection.
    upstream.scripts = [Script([chunk({"content": "x"}), b'data: {"choi'], clean_end=clean_end)]

    events, error = await events_until_error(adapter)

    assert events == [TextDelta(text="x")]
    assert isinstance(error, ProviderStreamBroken)


async def test_tool_call_fragments_split_anywhere(
    upstream: ScriptedUpstream, adapter: OpenAIAdapter
) -> None:
    opening = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    frames = chunk({"tool_calls": [opening]})
    for part in ['{"ci', 'ty": "Zü', 'rich"}']:
        frames += chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    frames += chunk({}, "stop") + DONE
    upstream.scripts = [Script([frames[i : i + 3] for i in range(0, len(frames), 3)])]

    events = [e async for e in adapter.stream(REQUEST)]

    completion = await collect(_replay(events))
    (call,) = completion.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "f", {"city": "Zürich"})
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "tool_calls", "a stop after tool calls means tool_calls"


async def _replay(events: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for event in events:
        yield event


def event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\r\ndata: {json.dumps(payload)}\r\n\r\n".encode()


def claude_body(*tokens: str) -> bytes:
    usage = {"input_tokens": 4, "output_tokens": 1}
    frames = [event("message_start", {"type": "message_start", "message": {"usage": usage}})]
    block = {"type": "text", "text": ""}
    frames.append(
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
    )
    frames.append(event("ping", {"type": "ping"}))
    for token in tokens:
        delta = {"type": "text_delta", "text": token}
        frames.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    frames.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    frames.append(
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 2},
            },
        )
    )
    frames.append(event("message_stop", {"type": "message_stop"}))
    return b"".join(frames)


@pytest.mark.parametrize("size", [1, 7, 64])
async def test_anthropic_events_split_across_reads(
    upstream: ScriptedUpstream, claude: AnthropicAdapter, size: int
) -> None:
    whole = claude_body("Hello", " world")
    pieces: list[Step] = [whole[i : i + size] for i in range(0, len(whole), size)]
    upstream.scripts = [Script(pieces), Script(pieces)]

    for _ in range(2):
        completion = await collect(claude.stream(REQUEST))

        assert completion.text == "Hello world"
        assert completion.finish_reason == "stop"
        assert completion.usage == Usage(prompt_tokens=4, completion_tokens=2)
    assert upstream.connections == 1, "the body is read to its end, so the connection is reused"


async def test_anthropic_pings_keep_the_idle_timer_from_firing(
    upstream: ScriptedUpstream, claude: AnthropicAdapter
) -> None:
    whole = claude_body("a", "b")
    # After the first token, where the idle timeout applies.
    cut = whole.index(b"event: content_block_delta", whole.index(b"event: content_block_delta") + 1)
    pings: list[Step] = [event("ping", {"type": "ping"}), 0.1] * 6  # twice the idle timeout
    upstream.scripts = [Script([whole[:cut], *pings, whole[cut:]])]

    assert (await collect(claude.stream(REQUEST))).text == "ab"


@pytest.mark.parametrize("gzip", [False, True])
async def test_an_uncompressed_body_on_aiohttp_is_read_from_aiohttp_itself(
    upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch, gzip: bool
) -> None:
    # httpx2's iterators over the SDK's aiohttp transport cost a generator step each per
    # token; only a body that needs decompressing goes through them.
    through_httpx2 = 0
    aiter_bytes = httpx2.Response.aiter_bytes

    def counted(response: httpx2.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        nonlocal through_httpx2
        through_httpx2 += 1
        return aiter_bytes(response, chunk_size)

    monkeypatch.setattr(httpx2.Response, "aiter_bytes", counted)
    upstream.scripts = [Script([body("plain", " text")], gzip=gzip)] * 2
    adapter = OpenAIAdapter(options(upstream, "/v1"))  # its own client: aiohttp underneath
    try:
        for _ in range(2):
            assert (await collect(adapter.stream(REQUEST))).text == "plain text"
    finally:
        await adapter.aclose()

    assert through_httpx2 == (2 if gzip else 0)
    assert upstream.connections == 1, "the body is read to its end, so the connection is reused"
