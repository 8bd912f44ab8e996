"""OpenAI chat completions, also spoken by Azure OpenAI and OpenAI-compatible servers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

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
    from openai import AsyncOpenAI

MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    # Spellings of OpenAI-compatible servers (TGI, vLLM, llama.cpp).
    "eos_token": "stop",
    "stop_sequence": "stop",
    "abort": "error",
    "error": "error",
}


def finish_reason(raw: str, *, had_tool_calls: bool) -> FinishReason:
    """The normalised reason; servers that say "stop" after tool calls mean "tool_calls"."""
    reason = _FINISH_REASONS.get(raw, "stop")
    return "tool_calls" if had_tool_calls and reason == "stop" else reason


def to_openai_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The request's system prompt and history in chat-completions form."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.extend(_convert(message))
    return out


def _convert(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"role": "tool", "tool_call_id": part.tool_call_id, "content": part.content}
            for part in message.content
            if isinstance(part, ToolResultPart)
        ]
    if message.role == "assistant":
        converted: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        calls = [
            {
                "id": part.id,
                "type": "function",
                "function": {"name": part.name, "arguments": json.dumps(part.arguments)},
            }
            for part in message.content
            if isinstance(part, ToolCallPart)
        ]
        if calls:
            converted["tool_calls"] = calls
        return [converted]
    if not any(isinstance(part, ImageUrlPart) for part in message.content):
        # Plain strings, because many OpenAI-compatible servers accept nothing else.
        return [{"role": "user", "content": message.text}]
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImageUrlPart):
            image = part.image_url.model_dump(exclude_none=True)
            parts.append({"type": "image_url", "image_url": image})
    return [{"role": "user", "content": parts}]


def to_openai_params(request: ChatRequest, max_tokens_param: MaxTokensParam) -> dict[str, Any]:
    """The body of a chat-completions request, without the streaming fields."""
    params: dict[str, Any] = {"model": request.model, "messages": to_openai_messages(request)}
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.max_tokens is not None:
        params[max_tokens_param] = request.max_tokens
    if request.stop:
        params["stop"] = request.stop
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, ToolNamed):
            params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice:
            params["tool_choice"] = choice
    return params


class OpenAIAdapter(SSEAdapter):
    """Chat completions through `openai.AsyncOpenAI`, streaming with usage."""

    provider = "openai"

    def __init__(
        self,
        options: AdapterOptions,
        *,
        http_client: httpx2.AsyncClient | None = None,
        max_tokens_param: MaxTokensParam = "max_tokens",
    ) -> None:
        super().__init__(options, http_client=http_client)
        self.max_tokens_param: MaxTokensParam = max_tokens_param
        # Built now, not on first use: importing an SDK blocks the event loop for a while.
        self._sdk = self._make_client()
        self._stream_timeout, self._stream_headers = stream_settings(self._sdk_timeout())

    def _make_client(self) -> AsyncOpenAI:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ProviderSdkMissing("Install the `openai` package") from exc
        return AsyncOpenAI(
            # Servers like Ollama take no key, but the SDK insists on one.
            api_key=self.options.api_key or "unused",
            base_url=self.options.base_url,
            max_retries=0,
            timeout=self._sdk_timeout(),
            default_headers=dict(self.options.headers) or None,
            http_client=self._http_client or _aiohttp_client(self._sdk_timeout()),
        )

    async def aclose(self) -> None:
        """Close the connections the SDK client opened itself."""
        if self._http_client is None:
            await self._sdk.close()

    async def _send(self, request: ChatRequest) -> httpx2.Response:
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        # The client's `post`, which the SDK documents for requests of any shape, rather
        # than `chat.completions.create`: that walks the whole body against its TypedDicts
        # (aliases, files, dates), none of which a body built by `to_openai_params` has.
        # That cost 0.56 ms of CPU with 3 messages of history, 3.1 ms with 21 (openai 3.52).
        # Transport, auth, headers and errors are the SDK's all the same.
        body = to_openai_params(request, self.max_tokens_param)
        body.update(stream=True, stream_options={"include_usage": True})
        stream = await self._sdk.post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            options={
                "headers": self._stream_headers,
                "timeout": self._stream_timeout,
                "security": {"bearer_auth": True},
            },
            stream=True,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )
        return stream.response

    def _reader(self) -> _ChunkReader:
        return _ChunkReader(self.endpoint)

    async def _fetch_models(self) -> list[str]:
        return [model.id async for model in self._sdk.models.list()]

    def _translate(self, exc: Exception, *, started: bool) -> ProviderError | None:
        import openai

        fields: dict[str, Any] = {"endpoint": self.endpoint}
        if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one too
            timed_out = transport_timed_out(exc, isinstance(exc, openai.APITimeoutError))
            return self._connection_error(timed_out=timed_out, started=started)
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                message=_message(exc.body) or exc.message,
                retry_after=parse_retry_after(exc.response.headers),
                **fields,
            )
        if isinstance(exc, openai.APIError):
            # Any other SDK error with a body; mid-stream `{"error": ...}` frames, which the
            # SDK's stream raised as these, are read by `_stream_error` now.
            body = exc.body if isinstance(exc.body, dict) else {}
            kind = body.get("code") or body.get("type")
            return error_for_type(str(kind) if kind else None, message=exc.message, **fields)
        return self._transport_error(exc, started=started) or request_error(exc, started, **fields)


def _aiohttp_client(timeout: httpx2.Timeout) -> httpx2.AsyncClient:
    """The SDK's own client on aiohttp: the default httpx2 transport (httpcore2, h11, anyio)
    costs more CPU per streamed chunk than everything else a relayed token needs."""
    from openai import DefaultAioHttpClient

    return DefaultAioHttpClient(timeout=timeout)


class _ChunkReader:
    """The `FrameReader` of chat-completion chunks, read from the SSE data as plain dicts.

    The stream ends at `[DONE]`; an `{"error": ...}` frame breaks it.
    """

    __slots__ = ("ended", "endpoint", "error", "raw_finish", "tools", "usage")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.tools = ToolCallAssembler()
        self.usage: Usage | None = None
        self.raw_finish: str | None = None
        self.ended = False
        self.error: ProviderError | None = None

    def read(self, frames: list[SSEEvent]) -> list[StreamEvent]:
        """The events in `frames`, up to `[DONE]` or the first bad frame."""
        events: list[StreamEvent] = []
        for _, data in frames:
            if data.startswith(b"[DONE]"):
                self.ended = True
                break
            try:
                # Decoding first is quicker than json.loads' own sniffing of bytes.
                chunk = json.loads(data.decode())
            except ValueError:  # also undecodable UTF-8
                chunk = None
            if not isinstance(chunk, dict):
                self.error = ProviderStreamBroken(
                    "The provider sent a frame that is not valid JSON",
                    retryable=False,
                    endpoint=self.endpoint,
                )
                break
            error = chunk.get("error")
            if error:
                self.error = _stream_error(error, self.endpoint)
                break
            try:
                self._chunk(chunk, events)
            except (AttributeError, KeyError, TypeError, ValueError):
                # A chunk not shaped like OpenAI's (a pydantic ValidationError is a ValueError).
                self.error = ProviderStreamBroken(
                    "The provider sent a chunk of an unexpected shape",
                    retryable=False,
                    endpoint=self.endpoint,
                )
                break
        return events

    def finish(self) -> list[StreamEvent]:
        """The complete tool calls, the usage if any, and `Finish`."""
        if self.raw_finish is None:
            raise ProviderStreamBroken(
                "The stream ended without a finish reason", endpoint=self.endpoint
            )
        events: list[StreamEvent] = [*self.tools.pop_all()]
        had_tool_calls = bool(events)
        if self.usage is not None:
            events.append(self.usage)
        reason = finish_reason(self.raw_finish, had_tool_calls=had_tool_calls)
        events.append(Finish(reason=reason, raw_reason=self.raw_finish))
        return events

    def _chunk(self, chunk: dict[str, Any], events: list[StreamEvent]) -> None:
        """Add the events of the first choice of `chunk`; note its usage and finish reason."""
        usage = chunk.get("usage")
        if usage is not None:
            # Some compatible servers send nulls here.
            self.usage = Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            )
        for choice in chunk.get("choices") or ():
            # We ask for one choice; some servers leave out its index.
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning and isinstance(reasoning, str):
                    events.append(ReasoningDelta(text=reasoning))
                content = delta.get("content")
                if content:
                    events.append(TextDelta(text=_text(content)))
                for call in delta.get("tool_calls") or ():
                    index = call["index"]
                    if not isinstance(index, int):
                        raise TypeError("tool call index")
                    function = call.get("function") or {}
                    events.append(
                        self.tools.feed(
                            index,
                            id=_optional_text(call.get("id")),
                            name=_optional_text(function.get("name")),
                            fragment=_text(function.get("arguments") or ""),
                        )
                    )
            reason = choice.get("finish_reason")
            if reason:
                if not isinstance(reason, str):
                    raise TypeError("finish_reason")
                self.raw_finish = reason


def _text(value: object) -> str:
    """`value`, which must be a string (stream events are built without validation)."""
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _stream_error(error: object, endpoint: str) -> ProviderError:
    """The error for a `data: {"error": ...}` frame, as the SDK's stream reported it."""
    body = error if isinstance(error, dict) else {}
    message = body.get("message")
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    kind = body.get("code") or body.get("type")
    return error_for_type(str(kind) if kind else None, message=message, endpoint=endpoint)


def _message(body: object) -> str | None:
    """The `error.message` of an OpenAI-style error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure OpenAI: model names are deployment names; `base_url` is the resource endpoint."""

    provider = "azure_openai"

    def __init__(
        self,
        options: AdapterOptions,
        *,
        api_version: str,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not options.base_url:
            raise ValueError("Azure OpenAI needs base_url, the resource endpoint")
        self.api_version = api_version
        super().__init__(options, http_client=http_client, max_tokens_param="max_tokens")

    def _make_client(self) -> AsyncOpenAI:
        from openai import AsyncAzureOpenAI

        assert self.options.base_url is not None  # checked in __init__
        return AsyncAzureOpenAI(
            azure_endpoint=self.options.base_url,
            api_version=self.api_version,
            api_key=self.options.api_key,
            max_retries=0,
            timeout=self._sdk_timeout(),
            default_headers=dict(self.options.headers) or None,
            http_client=self._http_client or _aiohttp_client(self._sdk_timeout()),
        )
