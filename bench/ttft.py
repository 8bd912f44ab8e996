"""Time to first token through relaychat, against the same stream straight from the upstream.

Through relaychat: from sending `POST /api/messages/{id}` to reading the first
`message.delta` of that reply on the user's already-open `/api/events` stream. Baseline
("direct"): the same client, from sending a streaming chat-completions request straight to
the fake upstream to reading its first content chunk. The same fake serves both, at the
same concurrency and pacing, and the two alternate, so machine noise hits them alike.

- one stream: one user, replies of a few tokens, one after another;
- 200 streams: 200 users, each with its own event stream, asking again as soon as its
  reply ends (plus a few ms of jitter), replies of 40 tokens at 50 tokens/s.

relaychat runs alone on one core; the fake upstream and this load generator on the other.

    uv run python -m bench.ttft [--quick] [--backends sqlite,pg] [--streams 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    ALL_CPUS,
    REQUEST_SECONDS,
    Backend,
    BenchUser,
    Connection,
    Listener,
    Proc,
    add_common_args,
    backends,
    bounded,
    cores,
    cpu_seconds,
    expect,
    extra_env,
    fake_directive,
    fake_upstream,
    first_error,
    make_users,
    percentile,
    pin,
    relaychat_server,
    run,
    sse_events,
    table,
    verdict,
    workspace,
)

TARGET_ONE_P50_MS = 2.0
TARGET_LOAD_P50_MS = 25.0
TARGET_LOAD_P99_MS = 60.0

TOKEN_DELAY_MS = 20  # 50 tokens/s per stream
LOAD_TOKENS = 40
LOAD_REPLY = " ".join(f"word{i}" for i in range(LOAD_TOKENS))
ONE_REPLY = "Hello there, friend."
THINK_MS = 20  # a stream waits 0..THINK_MS before asking again
SEED_TEXT = "seed"
# uvicorn closes keep-alive connections idle for 5 s; reconnect (untimed) before that.
REOPEN_IDLE_SECONDS = 4.0


@dataclass
class Scenario:
    """One way of getting a reply, for one stream; `round()` returns the TTFT in seconds."""

    prompt: str
    port: int
    conn: Connection | None = None
    used: float = 0.0

    async def round(self) -> float:
        raise NotImplementedError

    async def connection(self) -> Connection:
        """The stream's keep-alive connection, reopened when the server may have closed it."""
        if self.conn is not None and time.monotonic() - self.used > REOPEN_IDLE_SECONDS:
            await self.close()
        if self.conn is None:
            self.conn = await Connection.open(self.port)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Direct(Scenario):
    """Straight to the fake upstream, as relaychat's request would look."""

    body: bytes = b""

    def __post_init__(self) -> None:
        request = {
            "model": "fake-model",
            "messages": [
                {"role": "user", "content": SEED_TEXT},
                {"role": "user", "content": self.prompt},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self.body = json.dumps(request).encode()

    async def round(self) -> float:
        conn = await self.connection()
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                t0 = time.perf_counter()
                conn.send(
                    "POST",
                    "/v1/chat/completions",
                    body=self.body,
                    headers={"Authorization": "Bearer fake-key"},
                )
                status, _ = await conn.head()
                if status != 200:
                    raise RuntimeError(f"fake answered {status}")
                first: float | None = None
                async for event in sse_events(conn):
                    if event.data == b"[DONE]":
                        continue
                    chunk = json.loads(event.data)
                    if (
                        first is None
                        and chunk["choices"]
                        and chunk["choices"][0]["delta"].get("content")
                    ):
                        first = event.at
            self.used = time.monotonic()
        except BaseException:
            await self.close()
            raise
        if first is None:
            raise RuntimeError("no content chunk")
        return first - t0


@dataclass
class Relayed(Scenario):
    """Through relaychat: POST the message, watch the user's event stream."""

    user: BenchUser | None = None
    listener: Listener | None = None

    async def round(self) -> float:
        assert self.user is not None and self.listener is not None
        conn = await self.connection()
        body = {"text": self.prompt, "parent_message_id": self.user.seed_message_id}
        try:
            t0 = time.perf_counter()
            response = await asyncio.wait_for(
                conn.request(
                    "POST",
                    f"/api/messages/{self.user.conversation_id}",
                    json_body=body,
                    token=self.user.token,
                ),
                REQUEST_SECONDS,
            )
            self.used = time.monotonic()
        except BaseException:
            await self.close()
            raise
        message_id = expect(response, 202, "post message")["response_message_id"]
        try:
            first = await self.listener.wait("message.delta", message_id)
            await self.listener.completed(message_id)
        finally:
            self.listener.forget(message_id)
        return first - t0


@dataclass
class PhaseResult:
    samples: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)  # sampled concurrency
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process
    wall: float = 0.0

    def add(self, other: PhaseResult) -> None:
        self.samples += other.samples
        self.errors += other.errors
        self.in_flight += other.in_flight
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.wall += other.wall

    def load(self, name: str) -> str:
        """CPU use of a process during the phase, in % of one core."""
        return f"{self.cpu[name] / self.wall * 100:.0f}%" if self.wall and name in self.cpu else "-"


async def one_stream(scenario: Scenario, rounds: int, result: PhaseResult) -> None:
    """`rounds` replies one after another."""
    for _ in range(rounds):
        try:
            result.samples.append(await scenario.round())
        except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
    await scenario.close()


@contextlib.asynccontextmanager
async def measured(result: PhaseResult, pids: dict[str, list[int]]) -> AsyncIterator[None]:
    """Record the wall time of the block and the CPU time of each group of processes."""
    before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
    started = time.perf_counter()
    yield
    result.wall += time.perf_counter() - started
    for name, group in pids.items():
        result.cpu[name] = sum(cpu_seconds(p) for p in group) - before[name]


async def many_streams(
    scenarios: list[Scenario],
    rounds: int,
    warmup: int,
    period: float,
    *,
    seed: int,
    result: PhaseResult,
) -> None:
    """Each scenario asks `warmup + rounds` times; starts are spread over one `period`."""
    rng = random.Random(seed)
    state = {"in_flight": 0, "running": len(scenarios), "started": 0}

    async def loop(index: int, scenario: Scenario) -> None:
        await asyncio.sleep(period * index / len(scenarios))
        state["started"] += 1
        try:
            for round_ in range(warmup + rounds):
                state["in_flight"] += 1
                try:
                    value = await scenario.round()
                except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    if round_ >= warmup:
                        result.samples.append(value)
                finally:
                    state["in_flight"] -= 1
                await asyncio.sleep(rng.uniform(0, THINK_MS / 1000))
        finally:
            state["running"] -= 1
            await scenario.close()

    async def sample() -> None:
        while state["running"] == len(scenarios):
            await asyncio.sleep(0.05)
            # From when every stream has started to when the first one is done.
            if state["started"] == len(scenarios):
                result.in_flight.append(state["in_flight"])

    limit = (warmup + rounds) * period * 6 + 60
    async with asyncio.timeout(limit):
        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(loop(i, s) for i, s in enumerate(scenarios)))
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def summarize(title: str, pooled: dict[str, PhaseResult], targets: dict[float, float]) -> None:
    """p50/p99 both ways, the overhead, and the verdicts."""
    direct, relayed = pooled["direct"], pooled["relaychat"]
    rows = []
    for name, result in pooled.items():
        s = result.samples
        concurrency = (
            f"{sum(result.in_flight) / len(result.in_flight):.0f}" if result.in_flight else "-"
        )
        rows.append(
            [
                name,
                len(s),
                len(result.errors),
                concurrency,
                ms(percentile(s, 0.5)) if s else "-",
                ms(percentile(s, 0.99)) if s else "-",
                ms(max(s)) if s else "-",
                result.load("relaychat"),
                result.load("fake+client"),
            ]
        )
    print(f"\n{title}")
    headers = ["path", "replies", "errors", "streams", "p50 ms", "p99 ms", "max ms"]
    print(table([*headers, "relaychat CPU", "fake+client CPU"], rows))
    for name, result in pooled.items():
        if result.errors:
            print(f"  {name} errors, first: {result.errors[0]}")
    if not (direct.samples and relayed.samples):
        return
    for fraction, target in targets.items():
        base = percentile(direct.samples, fraction)
        value = percentile(relayed.samples, fraction)
        label = f"p{round(fraction * 100)}"
        print(
            f"  overhead {label}: {ms(value - base)} ms (relaychat {ms(value)} / direct "
            f"{ms(base)} = x{value / base:.1f})   target <= {target:g} ms: "
            f"{verdict((value - base) * 1000, target)}"
        )


async def bench_backend(
    backend: Backend, args: argparse.Namespace, fake: Proc, workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    streams = args.streams
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, fake + client on {load_cpus}")
    async with relaychat_server(
        backend, workdir, fake_port=fake.port, env=extra_env(args)
    ) as server:
        started = time.monotonic()
        users = await make_users(server.port, streams)
        print(f"  {streams} users signed in ({time.monotonic() - started:.1f} s)")
        pin(server.pid, server_cpus)
        pin(0, load_cpus)
        listeners = await bounded((Listener.open(server.port, u.token) for u in users), 32)
        try:
            pids = {"relaychat": [server.pid], "fake+client": [fake.pid, os.getpid()]}
            await run_scenarios(args, fake.port, server.port, users, listeners, pids)
        finally:
            for listener in listeners:
                await listener.close()
            pin(0, ALL_CPUS)
            error = first_error(server)
            if error:
                print(f"  the server logged errors; the first:\n{error}")


async def run_scenarios(
    args: argparse.Namespace,
    fake_port: int,
    server_port: int,
    users: list[BenchUser],
    listeners: list[Listener],
    pids: dict[str, list[int]],
) -> None:
    one_prompt = fake_directive(reply=ONE_REPLY, token_delay_ms=1) + "\nHello"
    load_prompt = fake_directive(reply=LOAD_REPLY, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"

    def direct(prompt: str) -> Direct:
        return Direct(prompt=prompt, port=fake_port)

    def relayed(prompt: str, index: int) -> Relayed:
        return Relayed(
            prompt=prompt, port=server_port, user=users[index], listener=listeners[index]
        )

    factories: dict[str, Callable[[str, int], Scenario]] = {
        "direct": lambda prompt, _i: direct(prompt),
        "relaychat": relayed,
    }

    # One stream, in alternating blocks (the first block of each is a warm-up).
    blocks, per_block = (4, 25) if args.quick else (8, 40)
    pooled = {name: PhaseResult() for name in factories}
    for block in range(blocks + 1):
        for name, make in factories.items():
            gc.collect()
            result = PhaseResult()
            async with measured(result, pids):
                await one_stream(make(one_prompt, 0), per_block, result)
            if block:
                pooled[name].add(result)
    for result in pooled.values():
        result.in_flight = [1]
    summarize(
        f"one stream, {len(ONE_REPLY.split())}-token replies",
        pooled,
        {0.5: TARGET_ONE_P50_MS, 0.99: float("inf")},
    )

    # Many streams at 50 tokens/s, alternating phases.
    n = len(users)
    repeats, rounds = (1, 4) if args.quick else (2, 6)
    period = LOAD_TOKENS * TOKEN_DELAY_MS / 1000
    pooled = {name: PhaseResult() for name in factories}
    for repeat in range(repeats):
        for name, make in factories.items():
            gc.collect()
            scenarios = [make(load_prompt, i) for i in range(n)]
            result = PhaseResult()
            async with measured(result, pids):
                await many_streams(scenarios, rounds, 1, period, seed=repeat, result=result)
            pooled[name].add(result)
    summarize(
        f"{n} streams, {LOAD_TOKENS}-token replies at {1000 // TOKEN_DELAY_MS} tokens/s",
        pooled,
        {0.5: TARGET_LOAD_P50_MS, 0.99: TARGET_LOAD_P99_MS},
    )


async def main(args: argparse.Namespace) -> None:
    with workspace("ttft") as workdir:
        _, load_cpus = cores()
        async with fake_upstream(workdir, cpus=load_cpus) as fake, backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, fake, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite,pg")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams")
    run(main, parser.parse_args())
