"""CPU per streamed token of each LLM adapter alone, against a bare httpx2 line reader.

The adapters run in this process, pinned to one core, against `relaychat dev fake-llm`
on the others: 10 concurrent streams of 20- and 100-token replies, 5 ms apart (one token
per read, as from a real model). This process's CPU time is read around each phase.

    per token = CPU of the 100-token phases / tokens
    marginal  = (CPU per 100-token stream - CPU per 20-token stream) / 80

The adapters run on the HTTP clients they make for themselves, as in the server (aiohttp
underneath); "OpenAIAdapter on httpx2" is the OpenAI one on a plain httpx2 client. The
baseline reads the same OpenAI stream with `httpx2` `aiter_lines` and `json.loads` and
nothing else: the least an adapter on that HTTP stack can cost.

    uv run python -m bench.llm_adapters [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx2

from bench.common import ALL_CPUS, cores, fake_directive, fake_upstream, pin, run, table, workspace
from relaychat.llm.adapters.anthropic_messages import AnthropicAdapter
from relaychat.llm.adapters.google_genai import GoogleAdapter
from relaychat.llm.adapters.openai_chat import OpenAIAdapter
from relaychat.llm.base import AdapterOptions, BaseAdapter
from relaychat.llm.types import ChatMessage, ChatRequest, TextDelta

STREAMS = 10
TOKEN_DELAY_MS = 5
LONG, SHORT = 100, 20

# One stream of `tokens` tokens; returns the text deltas seen.
Streamer = Callable[[int], Awaitable[int]]


def request(tokens: int) -> ChatRequest:
    reply = " ".join(f"tok{i}" for i in range(tokens))
    text = fake_directive(reply=reply, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"
    return ChatRequest(model="fake-model", messages=[ChatMessage(role="user", content=text)])


def adapter_streamer(adapter: BaseAdapter) -> Streamer:
    async def stream(tokens: int) -> int:
        return sum([isinstance(e, TextDelta) async for e in adapter.stream(request(tokens))])

    return stream


def lines_streamer(http: httpx2.AsyncClient, base_url: str) -> Streamer:
    async def stream(tokens: int) -> int:
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": request(tokens).messages[0].text}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        seen = 0
        headers = {"authorization": "Bearer fake-key"}
        url = f"{base_url}/v1/chat/completions"
        async with http.stream("POST", url, json=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        seen += bool(choice["delta"].get("content"))
        return seen

    return stream


async def measure(stream: Streamer, rounds: int) -> tuple[float, float]:
    """(µs per token of the long streams, marginal µs per token)."""
    await asyncio.gather(*(stream(SHORT) for _ in range(STREAMS)))  # warm-up
    cpu = {SHORT: 0.0, LONG: 0.0}
    for _ in range(rounds):
        for tokens in (SHORT, LONG):
            start = time.process_time()
            seen = await asyncio.gather(*(stream(tokens) for _ in range(STREAMS)))
            cpu[tokens] += time.process_time() - start
            if seen != [tokens] * STREAMS:
                raise RuntimeError(f"expected {tokens} tokens per stream, saw {seen}")
    per_stream = {tokens: cpu[tokens] / (rounds * STREAMS) for tokens in cpu}
    return per_stream[LONG] / LONG * 1e6, (per_stream[LONG] - per_stream[SHORT]) / 80 * 1e6


async def main(args: argparse.Namespace) -> None:
    here, load_cpus = cores()
    rounds = 3 if args.quick else 10
    with workspace("llm-adapters") as workdir:
        async with (
            fake_upstream(workdir, cpus=load_cpus) as fake,
            httpx2.AsyncClient(trust_env=False) as http,
        ):
            base_url = f"http://127.0.0.1:{fake.port}"

            def options(path: str) -> AdapterOptions:
                return AdapterOptions(endpoint="fake", api_key="fake-key", base_url=base_url + path)

            # Each on the HTTP client it makes for itself, as in the server (aiohttp).
            adapters: dict[str, BaseAdapter] = {
                "OpenAIAdapter": OpenAIAdapter(options("/v1")),
                "AnthropicAdapter": AnthropicAdapter(options("")),
                "GoogleAdapter": GoogleAdapter(options("")),
                "OpenAIAdapter on httpx2": OpenAIAdapter(options("/v1"), http_client=http),
            }
            streamers: dict[str, Streamer] = {
                "httpx2 aiter_lines + json.loads (baseline)": lines_streamer(http, base_url),
                **{name: adapter_streamer(adapter) for name, adapter in adapters.items()},
            }
            pin(0, here)
            rows = []
            try:
                for name, stream in streamers.items():
                    per_token, marginal = await measure(stream, rounds)
                    rows.append([name, f"{per_token:.1f}", f"{marginal:.1f}"])
            finally:
                pin(0, ALL_CPUS)
                for adapter in adapters.values():
                    await adapter.aclose()
    print(f"\n=== in-process adapter CPU, {STREAMS} streams, one token per read, cpu {here}")
    print(table(["reader", "us/token", "marginal us/token"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    run(main, parser.parse_args())
