"""Anthropic Messages API through `anthropic.AsyncAnthropic`, from its raw stream events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from relaychat.llm.adapters.sse_stream import (
    SSEAdapter,
    SSEEvent,
    request_error,
    stream_settings,
)
from relaychat.llm.base import AdapterOptions, transport_timed_out
from relaychat.llm.errors import (
    ProviderError,
    ProviderSdkMissing,
    ProviderStreamBroken,
    error_for_status,
    error_for_type,
    parse_retry_after,
)
from relaychat.llm.types import (
    ChatMessage,
    ChatRequest,
    Finish,
    FinishReason,
    ImageUrlPart,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallAssembler,
    ToolCallPart,
    ToolNamed,
    ToolResultPart,
    Usage,
)

if TYPE_CHECKING:
    import httpx2
    from anthropic import AsyncAnthropic

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def to_anthropic_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The history as alternating user/assistant turns; tool results travel as user turns."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [block for part in message.content if (block := _block(part)) is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _block(part: Any) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        # The API refuses empty text blocks.
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImageUrlPart):
        return {"type": "image", "source": _image_source(part.image_url.url)}
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
    if isinstance(part, ToolResultPart):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": part.tool_call_id,
            "content": part.content,
        }
        if part.is_error:
            block["is_error"] = True
        return block
    return None


def _image_source(url: str) -> dict[str, str]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def to_anthropic_params(request: ChatRequest, default_max_tokens: int) -> dict[str, Any]:
    """Keyword arguments for `messages.create`, without `stream`."""
    params: dict[str, Any] = {
        "model": request.model,
        "messages": to_anthropic_messages(request.messages),
        "max_tokens": request.max_tokens or default_max_tokens,
    }
    if request.system:
        params["system"] = request.system
    # temperature and top_p are left out: current Claude models refuse them with a 400, and
    # the SDK no longer accepts them.
    if request.stop:
        params["stop_sequences"] = request.stop
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, ToolNamed):
            params["tool_choice"] = {"type": "tool", "name": choice.name}
        elif choice:
            params["tool_choice"] = _TOOL_CHOICE[choice]
    return params


class AnthropicAdapter(SSEAdapter):
    """Claude models; tool input JSON is assembled from `input_json_delta` fragments."""

    provider = "anthropic"

    def __init__(
        self, options: AdapterOptions, *, http_client: httpx2.AsyncClient | None = None
    ) -> None:
        super().__init__(options, http_client=http_client)
        try:
            from anthropic import AsyncAnthropic
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ProviderSdkMissing("Install the `anthropic` package") from exc
        if http_client is None:
            # The SDK's own client on aiohttp: the default httpx2 transport (httpcore2, h11,
            # anyio) costs more CPU per streamed chunk than the rest of a relayed token.
            from anthropic import DefaultAioHttpClient

            http_client = DefaultAioHttpClient(timeout=self._sdk_timeout())
        timeout, headers = stream_settings(self._sdk_timeout())
        # Without a read deadline for each chunk (see `stream_settings`); the SDK derives
        # `x-stainless-timeout` from it too, so that one is sent as before as well.
        self._stream_timeout = timeout
        read = headers["x-stainless-read-timeout"]
        self._stream_headers = {**headers, "x-stainless-timeout": read}
        # Built now, not on first use: importing an SDK blocks the event loop for a while.
        self._sdk: AsyncAnthropic = AsyncAnthropic(
            api_key=options.api_key,
            base_url=options.base_url,
            max_retries=0,
            timeout=self._sdk_timeout(),
            default_headers=dict(options.headers) or None,
            http_client=http_client,
        )

    async def aclose(self) -> None:
        """Close the connections the SDK client opened itself."""
        if self._http_client is None:
            await self._sdk.close()

    async def _send(self, request: ChatRequest) -> httpx2.Response:
        params = to_anthropic_params(request, self.options.default_max_tokens)
        stream = await self._sdk.messages.create(
            **params,
            stream=True,
            timeout=self._stream_timeout,
            extra_headers=self._stream_headers,
        )
        response: httpx2.Response = stream.response  # `stream` is Any: params are a dict
        return response

    def _reader(self) -> _StreamState:
        return _StreamState(self.endpoint)

    async def _fetch_models(self) -> list[str]:
        return [model.id async for model in self._sdk.models.list()]

    def _translate(self, exc: Exception, *, started: bool) -> ProviderError | None:
        import anthropic

        fields: dict[str, Any] = {"endpoint": self.endpoint}
        if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError is one too
            timed_out = transport_timed_out(exc, isinstance(exc, anthropic.APITimeoutError))
            return self._connection_error(timed_out=timed_out, started=started)
        if isinstance(exc, anthropic.APIStatusError):
            if exc.status_code < 400:
                # An `event: error` inside a stream that began with 200.
                return error_for_type(exc.type, message=exc.api_message, **fields)
            return error_for_status(
                exc.status_code,
                message=exc.api_message or exc.message,
                retry_after=parse_retry_after(exc.response.headers),
                **fields,
            )
        return self._transport_error(exc, started=started) or request_error(exc, started, **fields)


class _StreamState:
    """The `FrameReader` of Messages events: usage, stop reason, and tool blocks being built.

    The events are read from the SSE data as plain dicts. The stream ends at
    `message_stop`; an `event: error` breaks it.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.tools = ToolCallAssembler()
        self.tool_index: dict[int, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.ended = False
        self.error: ProviderError | None = None

    def read(self, frames: list[SSEEvent]) -> list[StreamEvent]:
        """The events in `frames`, up to `message_stop` or the first bad event."""
        events: list[StreamEvent] = []
        for name, data in frames:
            # The SDK's rules: unnamed events, pings and events without data mean nothing.
            if name is None or name == "ping":
                continue
            if name == "error":
                self.error = _stream_error(data, self.endpoint)
                break
            if not data:
                continue
            try:
                raw = json.loads(data.decode())
            except ValueError:  # also undecodable UTF-8
                raw = None
            if not isinstance(raw, dict):
                self.error = ProviderStreamBroken(
                    "The provider sent a frame that is not valid JSON",
                    retryable=False,
                    endpoint=self.endpoint,
                )
                break
            try:
                self.handle(raw, events)
            except (AttributeError, KeyError, TypeError, ValueError):
                # An event not shaped like Anthropic's (a ValidationError is a ValueError).
                self.error = ProviderStreamBroken(
                    "The provider sent an event of an unexpected shape",
                    retryable=False,
                    endpoint=self.endpoint,
                )
                break
            if self.ended:
                break
        return events

    def finish(self) -> list[StreamEvent]:
        """The complete tool calls, the usage, and `Finish`."""
        if self.stop_reason is None:
            raise ProviderStreamBroken(
                "The stream ended without a stop reason", endpoint=self.endpoint
            )
        return [
            *self.tools.pop_all(),
            Usage(prompt_tokens=self.input_tokens, completion_tokens=self.output_tokens),
            Finish(reason=_STOP_REASONS.get(self.stop_reason, "stop"), raw_reason=self.stop_reason),
        ]

    def handle(self, raw: dict[str, Any], events: list[StreamEvent]) -> None:
        """Add the events for one raw stream event."""
        kind = raw["type"]
        if kind == "content_block_delta":
            self._delta(raw["index"], raw["delta"], events)
        elif kind == "message_start":
            usage = raw["message"]["usage"]
            self.input_tokens = (
                usage["input_tokens"]
                + (usage.get("cache_creation_input_tokens") or 0)
                + (usage.get("cache_read_input_tokens") or 0)
            )
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "content_block_start":
            block = raw["content_block"]
            if block["type"] == "tool_use":
                ordinal = self.tool_index.setdefault(raw["index"], len(self.tool_index))
                events.append(
                    self.tools.feed(
                        ordinal, id=_text(block["id"]), name=_text(block["name"]), fragment=""
                    )
                )
        elif kind == "content_block_stop":
            stopped_tool = self.tool_index.get(raw["index"])
            call = self.tools.pop(stopped_tool) if stopped_tool is not None else None
            if call is not None:
                events.append(call)
        elif kind == "message_delta":
            self.stop_reason = raw["delta"].get("stop_reason") or self.stop_reason
            usage = raw.get("usage")
            if usage is not None:
                output_tokens = usage["output_tokens"]
                if not isinstance(output_tokens, int):
                    raise TypeError("output_tokens")
                self.output_tokens = output_tokens
        elif kind == "message_stop":
            self.ended = True

    def _delta(self, index: int, delta: dict[str, Any], events: list[StreamEvent]) -> None:
        kind = delta["type"]
        if kind == "text_delta":
            if text := _text(delta["text"]):
                events.append(TextDelta(text=text))
        elif kind == "thinking_delta":
            if thinking := _text(delta["thinking"]):
                events.append(ReasoningDelta(text=thinking))
        elif kind == "input_json_delta" and index in self.tool_index:
            ordinal = self.tool_index[index]
            fragment = _text(delta["partial_json"])
            events.append(self.tools.feed(ordinal, id=None, name=None, fragment=fragment))


def _text(value: object) -> str:
    """`value`, which must be a string (stream events are built without validation)."""
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _stream_error(data: bytes, endpoint: str) -> ProviderError:
    """The error for an `event: error`, as the SDK reported it: `error.type` and `.message`."""
    try:
        body = json.loads(data.decode())
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return error_for_type(
        kind if isinstance(kind, str) else None,
        message=message if isinstance(message, str) else None,
        endpoint=endpoint,
    )
