"""Time to first token through relaychat, against the same stream straight from the upstream.

Through relaychat: from sending `POST /api/messages/{id}` to reading the first
`message.delta` of that reply on the user's already-open `/api/events` stream. Baseline
("direct"): the same client, from sending a streaming chat-completions request straight to
the fake upstream to reading its first content chunk. The same fake serves both, with the
same replies at the same pacing; relaychat and direct take turns, so machine noise hits
them alike. What is reported is the added time: relaychat's quantile minus direct's.

Issue 13's three rows (`bench.targets`):

- one (`ttft.one_p50`): one user, short replies one after another;
- burst (`ttft.burst_p50`, `ttft.burst_p99`): 200 users with open event streams post in
  the same instant (every request written in one go, on connections opened beforehand),
  replies of 40 tokens at 50 tokens/s, over a few rounds; direct: 200 streaming requests
  written in one go;
- busy (`ttft.busy_p50`, `ttft.busy_p99`): 200 long replies stream at 50 tokens/s (their
  starts spread over a few seconds, then a pause until all of them stream); meanwhile one
  more user posts short messages one after another, each after the previous reply ended;
  direct: the same 200 + 1 streams from the fake.

For relaychat the table also splits the time to the first delta at the POST's answer
(202: the message and the generation's rows are committed) and at `generation.started` on
the event stream; a reply whose first token did not come within the wait (30 s) counts as
the time waited, a lower bound. relaychat is pinned to one core, the fake upstream and this
load generator to the other (other processes of the machine are not kept off them: the
load average is printed with every table). `--profile` samples relaychat with py-spy
during the burst rounds and the busy window (py-spy runs on the load generator's core,
which slows the client a little). `--trace` runs relaychat through `serve_traced`, which
marks each step of a reply's start, and prints each step's p50 / p99.

    uv run python -m bench.ttft [--quick] [--backends sqlite,pg] [--streams 200]
        [--rows one,burst,busy] [--profile [--profile-out DIR]] [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import targets
from bench.common import (
    ALL_CPUS,
    REQUEST_SECONDS,
    Backend,
    BenchUser,
    Connection,
    Listener,
    Proc,
    add_common_args,
    bounded,
    child,
    cores,
    cpu_seconds,
    expect,
    extra_env,
    fake_directive,
    first_error,
    load_average,
    make_users,
    on_each_backend,
    percentile,
    pin,
    profile_shares,
    py_spy_record,
    relaychat_server,
    run,
    server_env,
    sse_events,
    table,
    write_config,
)
from tests.support.live import HOST, free_port

TOKEN_DELAY_MS = 20  # 50 tokens/s per stream
BURST_TOKENS = 40
BURST_REPLY = " ".join(f"word{i}" for i in range(BURST_TOKENS))
ONE_REPLY = "Hello there, friend."
SEED_TEXT = "seed"
# Busy: the 200 starts are spread over BUSY_RAMP seconds; once all stream, a pause, then
# the probe user posts for the window. The long replies last the ramp, the window and a
# margin for relaychat's lag, so none ends while the probe measures.
BUSY_RAMP = 4.0
BUSY_SETTLE = 1.0
BUSY_MARGIN = 10.0
PROBE_THINK = (0.02, 0.08)  # seconds between a probe reply's end and the next post
# uvicorn closes keep-alive connections idle for 5 s; reconnect (untimed) before that.
REOPEN_IDLE_SECONDS = 4.0
ERRORS = (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError)


@dataclass(slots=True)
class Sample:
    """One reply's times, in seconds from sending its request."""

    first: float  # first text delta (relaychat) or content chunk (direct)
    sent: float = 0.0  # perf_counter() when the request was written
    answered: float | None = None  # relaychat: the POST's answer (202)
    started: float | None = None  # relaychat: generation.started on the event stream
    message_id: str | None = None  # relaychat: the reply's id
    # No first token within the wait: `first` is how long it was waited for (a lower bound).
    timed_out: bool = False


@dataclass
class Scenario:
    """One way of getting a reply, for one user: `start()` writes the request (returns when,
    by perf_counter), `finish(t0)` reads until the reply ended. `on_first` is called when
    the first token arrived."""

    prompt: str
    port: int
    conn: Connection | None = None
    used: float = 0.0
    on_first: Callable[[], None] | None = None
    t0: float = 0.0  # when the current request was written
    got_first: bool = False
    failed_at: float = 0.0

    def begin(self) -> float:
        self.t0, self.got_first = time.perf_counter(), False
        return self.t0

    async def prepare(self) -> None:
        """Open (or reopen, when the server may have closed it) the keep-alive connection."""
        if self.conn is not None and time.monotonic() - self.used > REOPEN_IDLE_SECONDS:
            await self.close()
        self.t0 = 0.0
        if self.conn is None:
            self.conn = await Connection.open(self.port)

    def start(self) -> float:
        raise NotImplementedError

    async def finish(self, t0: float) -> Sample:
        raise NotImplementedError

    async def round(self) -> Sample:
        await self.prepare()
        return await self.finish(self.start())

    def first_seen(self) -> None:
        self.got_first = True
        if self.on_first is not None:
            self.on_first()

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

    def start(self) -> float:
        assert self.conn is not None
        t0 = self.begin()
        self.conn.send(
            "POST",
            "/v1/chat/completions",
            body=self.body,
            headers={"Authorization": "Bearer fake-key"},
        )
        return t0

    async def finish(self, t0: float) -> Sample:
        assert self.conn is not None
        conn = self.conn
        first: float | None = None
        try:
            async with asyncio.timeout(REQUEST_SECONDS * 4):
                status, _ = await conn.head()
                if status != 200:
                    raise RuntimeError(f"fake answered {status}")
                async for event in sse_events(conn):
                    if first is not None or event.data == b"[DONE]":
                        continue
                    chunk = json.loads(event.data)
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = event.at
                        self.first_seen()
            self.used = time.monotonic()
        except BaseException:
            self.failed_at = time.perf_counter()
            await self.close()
            raise
        if first is None:
            raise RuntimeError("no content chunk")
        return Sample(first - t0, t0)


@dataclass
class Relayed(Scenario):
    """Through relaychat: POST the message, watch the user's event stream."""

    user: BenchUser | None = None
    listener: Listener | None = None

    def start(self) -> float:
        assert self.user is not None and self.conn is not None
        body = {"text": self.prompt, "parent_message_id": self.user.seed_message_id}
        headers = {"Authorization": f"Bearer {self.user.token}"}
        t0 = self.begin()
        self.conn.send(
            "POST",
            f"/api/messages/{self.user.conversation_id}",
            body=json.dumps(body).encode(),
            headers=headers,
        )
        return t0

    async def finish(self, t0: float) -> Sample:
        assert self.listener is not None and self.conn is not None
        try:
            response = await asyncio.wait_for(self.conn.response(), REQUEST_SECONDS)
            answered = time.perf_counter()
            self.used = time.monotonic()
        except BaseException:
            self.failed_at = time.perf_counter()
            await self.close()
            raise
        message_id = expect(response, 202, "post message")["response_message_id"]
        try:
            try:
                first = await self.listener.wait("message.delta", message_id)
            except BaseException:
                self.failed_at = time.perf_counter()
                raise
            self.first_seen()
            started = await self.listener.wait("generation.started", message_id)
            # Long replies outlast the listener's default limit.
            await self.listener.wait("end", message_id, REQUEST_SECONDS * 4)
            if self.listener.ends.get(message_id) != "message.completed":
                raise RuntimeError(f"reply {message_id} failed")
        finally:
            self.listener.forget(message_id)
        return Sample(first - t0, t0, answered - t0, started - t0, message_id)


@dataclass
class PhaseResult:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process group
    wall: float = 0.0
    loads: list[float] = field(default_factory=list)  # 1-minute load average, per phase
    notes: list[str] = field(default_factory=list)

    def add(self, other: PhaseResult) -> None:
        self.samples += other.samples
        self.errors += other.errors
        for name, seconds in other.cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        self.wall += other.wall
        self.loads += other.loads
        self.notes += other.notes

    def firsts(self) -> list[float]:
        return [s.first for s in self.samples]

    def load(self, name: str) -> str:
        """CPU use of a process group during the phase, in % of one core."""
        return f"{self.cpu[name] / self.wall * 100:.0f}%" if self.wall and name in self.cpu else "-"


@contextlib.asynccontextmanager
async def measured(result: PhaseResult, pids: dict[str, list[int]]) -> AsyncIterator[None]:
    """Record the wall time of the block, the CPU time of each group, the load average."""
    gc.collect()
    before = {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}
    started = time.perf_counter()
    yield
    result.wall += time.perf_counter() - started
    for name, group in pids.items():
        result.cpu[name] = sum(cpu_seconds(p) for p in group) - before[name]
    result.loads.append(os.getloadavg()[0])


def failed(result: PhaseResult, exc: BaseException, scenario: Scenario | None = None) -> None:
    """Keep the error; a reply whose first token had not come when a wait timed out also
    counts as a sample of the time waited (a lower bound: it came later, if ever)."""
    result.errors.append(f"{type(exc).__name__}: {exc}")
    if scenario is None or not isinstance(exc, TimeoutError):
        return
    if scenario.t0 and not scenario.got_first:
        waited = (scenario.failed_at or time.perf_counter()) - scenario.t0
        result.samples.append(Sample(waited, scenario.t0, timed_out=True))


# -- the three ways of asking ------------------------------------------------------------


async def one_stream(scenario: Scenario, rounds: int, result: PhaseResult) -> None:
    """`rounds` replies one after another."""
    for _ in range(rounds):
        try:
            result.samples.append(await scenario.round())
        except ERRORS as exc:
            failed(result, exc, scenario)
    await scenario.close()


async def burst(scenarios: list[Scenario], result: PhaseResult) -> None:
    """Every scenario's request written in one go (no await between them), then read."""
    opened = await asyncio.gather(*(s.prepare() for s in scenarios), return_exceptions=True)
    for outcome in opened:
        if isinstance(outcome, BaseException):
            failed(result, outcome)
    ready = [s for s, outcome in zip(scenarios, opened, strict=True) if outcome is None]
    starts = [s.start() for s in ready]
    outcomes = await asyncio.gather(
        *(s.finish(t0) for s, t0 in zip(ready, starts, strict=True)), return_exceptions=True
    )
    for scenario, sample in zip(ready, outcomes, strict=True):
        if isinstance(sample, Sample):
            result.samples.append(sample)
        else:
            failed(result, sample, scenario)
    result.notes.append(f"{(starts[-1] - starts[0]) * 1000:.1f} ms to write {len(starts)}")


async def busy(
    background: list[Scenario],
    probe: Scenario,
    window: float,
    result: PhaseResult,
    *,
    seed: int,
    during_window: Callable[[], contextlib.AbstractAsyncContextManager[object]] | None = None,
) -> None:
    """The probe's replies, one after another for `window` seconds, while every background
    scenario streams one long reply (started spread over BUSY_RAMP seconds).

    The window opens once every background reply streams or failed, and closes early if
    one of them completes (the load would drop). A background failure is noted, not
    counted: the row is the probe's.
    """
    rng = random.Random(seed)
    settled = streaming = 0
    lost: list[str] = []
    all_settled = asyncio.Event()
    completed = asyncio.Event()

    def settle() -> None:
        nonlocal settled
        settled += 1
        if settled == len(background):
            all_settled.set()

    def first() -> None:
        nonlocal streaming
        streaming += 1
        settle()

    async def one(index: int, scenario: Scenario) -> None:
        scenario.on_first = first
        await asyncio.sleep(BUSY_RAMP * index / len(background))
        try:
            await scenario.round()
        except ERRORS as exc:
            lost.append(f"{type(exc).__name__}: {exc}")
            if not scenario.got_first:
                settle()
        else:
            completed.set()
        finally:
            await scenario.close()

    tasks = [asyncio.create_task(one(i, s)) for i, s in enumerate(background)]
    try:
        ramp_started = time.perf_counter()
        await all_settled.wait()  # each background reply's own waits are bounded
        result.notes.append(
            f"{streaming} of {len(background)} streaming "
            f"{time.perf_counter() - ramp_started:.1f} s after the first start"
        )
        await asyncio.sleep(BUSY_SETTLE)
        async with during_window() if during_window else contextlib.nullcontext():
            deadline = time.perf_counter() + window
            while time.perf_counter() < deadline and not completed.is_set():
                try:
                    result.samples.append(await probe.round())
                except ERRORS as exc:
                    failed(result, exc, probe)
                await asyncio.sleep(rng.uniform(*PROBE_THINK))
        if completed.is_set():
            result.notes.append("a background reply completed before the window closed")
        await probe.close()
    finally:
        async with asyncio.timeout(REQUEST_SECONDS * 6):
            await asyncio.gather(*tasks, return_exceptions=True)
    if lost:
        result.notes.append(f"{len(lost)} background replies failed, the first: {lost[0]}")


# -- reporting ----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 1 else f"{seconds * 1000:.0f}"


def summarize(
    title: str, pooled: dict[str, PhaseResult], rows: dict[str, float], backend: Backend
) -> None:
    """Both sides' quantiles, relaychat's split, and each row's added time, recorded."""
    direct, relayed = pooled["direct"], pooled["relaychat"]
    lines = []
    for name, result in pooled.items():
        s = result.firsts()
        lines.append(
            [
                name,
                len(s),
                len(result.errors),
                ms(percentile(s, 0.5)) if s else "-",
                ms(percentile(s, 0.99)) if s else "-",
                ms(max(s)) if s else "-",
                result.load("relaychat"),
                result.load("fake+client"),
            ]
        )
    heads = ["path", "replies", "errors", "p50 ms", "p99 ms", "max ms", "relaychat CPU"]
    loads = direct.loads + relayed.loads
    print(f"\n{title}   ({load_average()}; per phase {min(loads):.2f}..{max(loads):.2f})")
    print(table([*heads, "fake+client CPU"], lines))
    marks: list[tuple[str, Callable[[Sample], float | None]]] = [
        ("POST answered (202)", lambda s: s.answered),
        ("generation.started read", lambda s: s.started),
        ("first delta read", lambda s: s.first),
    ]
    split = [
        (label, [v for s in relayed.samples if not s.timed_out and (v := pick(s)) is not None])
        for label, pick in marks
    ]
    split = [(label, values) for label, values in split if values]
    if split:
        print(
            table(
                ["relaychat, from the POST", "p50 ms", "p99 ms"],
                [[label, ms(percentile(v, 0.5)), ms(percentile(v, 0.99))] for label, v in split],
            )
        )
    for name, result in pooled.items():
        if result.errors:
            print(f"  {name}: {len(result.errors)} errors, the first: {result.errors[0]}")
        for note in sorted(set(result.notes)):
            print(f"  {name}: {note}")
    if not (direct.samples and relayed.samples):
        print("  no samples on one side: nothing recorded")
        return
    for key, fraction in rows.items():
        base = percentile(direct.firsts(), fraction)
        value = percentile(relayed.firsts(), fraction)
        added = (value - base) * 1000
        detail = (
            f"relaychat {ms(value)} - direct {ms(base)} ms, {len(relayed.samples)} replies, "
            f"load {min(loads):.1f}..{max(loads):.1f}"
        )
        lost = [
            f"{name} {n} timed out (counted as the time waited, a lower bound)"
            for name, side in pooled.items()
            if (n := sum(s.timed_out for s in side.samples))
        ]
        detail = "; ".join([detail, *lost])
        verdict = targets.record(key, backend.key, added, detail)
        print(f"  {key}: added {added:.1f} ms ({detail})   {verdict}")


# py-spy frames read "function (path/to/file.py:line)"; a label counts the samples with any
# of its substrings somewhere on the stack (the shares overlap).
PROFILE_LABELS: list[tuple[str, tuple[str, ...]]] = [
    ("POST /api/messages (api/messages.py post)", ("post (relaychat/api/messages.py",)),
    ("  get_sender_conversation", ("get_sender_conversation (relaychat/",)),
    ("  chat.send_message", ("send_message (relaychat/domain/messaging/chat.py",)),
    ("generation task (runner._run)", ("_run (relaychat/domain/answering/runner.py",)),
    ("  provider stream (adapter, HTTP client)", ("stream (relaychat/llm/base.py",)),
    ("  end of a generation (_end_completed)", ("_end_completed (relaychat/",)),
    ("delta publishing (_DeltaBatcher._run)", ("_DeltaBatcher._run (relaychat/",)),
    ("heartbeat (save_progress, sweep_orphans)", ("save_progress (", "sweep_orphans (")),
    ("event streams (realtime/sse.py)", ("(relaychat/realtime/sse.py",)),
    ("event bus (realtime/bus.py, redis_bus.py)", ("realtime/bus.py", "realtime/redis_bus.py")),
    ("SQLAlchemy", ("(sqlalchemy/",)),
    ("DB driver (aiosqlite, sqlite3, asyncpg)", ("(aiosqlite/", "(sqlite3/", "(asyncpg/")),
    ("HTTP client (openai, httpx2, httpcore)", ("(openai/", "(httpx", "(httpcore")),
    ("pydantic (Python frames only)", ("(pydantic",)),
    ("uvicorn, starlette, fastapi", ("(uvicorn/", "(starlette/", "(fastapi/")),
    ("Redis client", ("(redis/",)),
    ("logging", ("(logging/",)),
]
# The callees of these frames, to see what inside them costs what.
PROFILE_CHILDREN = [
    "post (relaychat/api/messages.py",
    "get_sender_conversation (relaychat/",
    "send_message (relaychat/domain/messaging/chat.py",
    "_job (relaychat/domain/messaging/chat.py",
    "_model_step (relaychat/domain/answering/agent_loop.py",
    "_finalize (relaychat/domain/answering/runner.py",
    "save_progress (relaychat/",
]


def children(lines: list[str], parent: str, top: int = 12) -> str:
    """Shares of the samples under frame `parent`, by the frame it called (itself: 'self')."""
    counts: dict[str, int] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not (stack and count.isdigit()):
            continue
        # Without serve_traced's wrappers (--trace): the callee is the wrapped function.
        frames = [f for f in stack.split(";") if "(bench/" not in f]
        at = next((i for i, f in enumerate(frames) if parent in f), None)
        if at is None:
            continue
        callee = frames[at + 1].split(" (")[0] if at + 1 < len(frames) else "(self)"
        counts[callee] = counts.get(callee, 0) + int(count)
    total = sum(counts.values())
    if not total:
        return f"  (no samples under {parent})"
    rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return table(
        [f"under {parent.split(' (')[0]}: callee", f"of its {total}"],
        [[name[:90], f"{n / total:.0%}"] for name, n in rows],
    )


def roots(lines: list[str], top: int = 12) -> str:
    """Shares of the samples by the outermost frame. SQLAlchemy runs its synchronous core in
    greenlets, whose stacks py-spy shows without the coroutine that awaits them: their
    outermost frame (`Session.execute`, `Session.commit`, ...) says which call they serve."""
    counts: dict[str, int] = {}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")[1:]
            root = frames[0].split(":")[0] + ")" if frames else "(no frame)"
            counts[root] = counts.get(root, 0) + int(count)
    total = sum(counts.values())
    rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return table(
        ["outermost frame (greenlets: the SQLAlchemy call)", "samples"],
        [[name[:90], f"{n / max(total, 1):.1%}"] for name, n in rows],
    )


def print_profile(title: str, paths: list[Path], seconds: float, keep: Path | None = None) -> None:
    lines = [line for path in paths if path.exists() for line in path.read_text().splitlines()]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for path in paths:
            if path.exists():
                shutil.copy(path, keep / path.name)
    print(f"\n  py-spy of relaychat, {title} (--gil --nonblocking at 100 Hz, {seconds:.0f} s):")
    print(profile_shares(lines, PROFILE_LABELS))
    print("\n" + roots(lines))
    for parent in PROFILE_CHILDREN:
        print("\n" + children(lines, parent))


# -- the traced server: when each step of a reply's start happened -----------------------

TRACE_FILE_ENV = "BENCH_TTFT_TRACE_FILE"
REPO = str(Path(__file__).resolve().parent.parent)  # for the server to import bench.ttft

# (label, from mark, to mark): the steps from the client's write of the POST ("sent") to
# its read of the first delta ("read"), marks taken by `serve_traced` in between. A mark
# "name>" is when `name` was called, "name" when it returned. In time order, except that
# the generation task may start before `send_message` has returned to the route.
TRACE_STEPS = [
    ("request read, parsed, routed, body validated", "sent", "handler>"),
    ("token, get_sender_conversation (SELECT conversation, user)", "handler>", "conversation"),
    ("send_message checks, plan_reply", "conversation", "plan_reply"),
    ("lock_thread (UPDATE conversation)", "plan_reply", "lock_thread"),
    ("resolve_parent", "lock_thread", "resolve_parent"),
    ("callbacks.message_created", "resolve_parent", "message_created"),
    ("add_generation (flush of the reply row)", "message_created", "add_generation"),
    ("_job (branch history, request)", "add_generation", "job"),
    ("events rendered until COMMIT starts", "job", "commit>"),
    ("COMMIT", "commit>", "commit"),
    ("after COMMIT to send_message's return", "commit", "send_message"),
    ("send_message's return to the generation task's start", "send_message", "run>"),
    ("generation task start to upstream request", "run>", "upstream>"),
    ("upstream request to its response head", "upstream>", "upstream"),
    ("response head to first text pushed", "upstream", "push"),
    ("push to delta publish call", "push", "publish>"),
    ("bus.publish of the first delta", "publish>", "publish"),
    ("published to read on the event stream", "publish", "read"),
    ("(send_message's return to the 202 read)", "send_message", "answered"),
    ("(generation.started published, after COMMIT)", "commit", "started_publish"),
]


def serve_traced() -> None:
    """`relaychat serve` with timestamps at each step of starting a person's reply.

    Runs in the server process. Marks are `time.perf_counter()` (CLOCK_MONOTONIC on Linux,
    the client's clock too), kept per request in a context variable that the generation
    task inherits, and filed by reply id once `send_message` returns. SIGUSR2 writes the
    filed ones as JSON to $BENCH_TTFT_TRACE_FILE and forgets them.
    """
    import contextvars
    import functools
    from typing import Any

    from sqlalchemy.ext.asyncio import AsyncSession

    from relaychat.api import messages as api_messages
    from relaychat.domain.answering import agent_loop, runner
    from relaychat.domain.messaging import chat
    from relaychat.domain.outbound import callbacks
    from relaychat.llm.adapters import openai_chat
    from relaychat.realtime import memory, redis_bus

    current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
        "bench_trace", default=None
    )
    filed: dict[str, dict[str, float]] = {}

    def mark(name: str) -> None:
        trace = current.get()
        if trace is not None and name not in trace:
            trace[name] = time.perf_counter()

    def wrap(owner: Any, attr: str, name: str, *, begin: bool = False) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if begin:
                mark(f"{name}>")
            try:
                return await original(*args, **kwargs)
            finally:
                mark(name)

        setattr(owner, attr, wrapper)

    bearer = getattr(api_messages, "bearer")  # noqa: B009 - not in the module's exports

    async def traced_bearer(request: Any) -> Any:
        current.set({"handler>": time.perf_counter()})  # the route's task and its children
        return await bearer(request)

    send_message = chat.send_message

    async def traced_send(*args: Any, **kwargs: Any) -> Any:
        sent = await send_message(*args, **kwargs)
        mark("send_message")
        trace = current.get()
        if trace is not None and sent.started is not None:
            filed[sent.started.response_id] = trace
        return sent

    push = agent_loop.DeltaPublisher.push

    def traced_push(self: Any, text: str) -> None:
        mark("push")
        push(self, text)

    def traced_publish(original: Any) -> Any:
        @functools.wraps(original)
        async def wrapper(self: Any, user_id: str, event: Any) -> Any:
            try:
                return await original(self, user_id, event)
            finally:
                if type(event).__name__ == "GenerationStarted":
                    mark("started_publish")

        return wrapper

    # A reply's deltas go out from its generation task (in-process bus: `_publish_now`), or
    # from the bus's batcher task, whose context is not the reply's: its trace is found by
    # the reply's id there.
    publish_now = agent_loop.DeltaPublisher._publish_now
    take = agent_loop.DeltaPublisher.take
    sent = agent_loop.DeltaPublisher.sent

    def mark_reply(publisher: Any, name: str) -> None:
        trace = filed.get(publisher.job.message_id)
        if trace is not None and name not in trace:
            trace[name] = time.perf_counter()

    def traced_publish_now(self: Any, text: str) -> bool:
        mark("publish>")
        published: bool = publish_now(self, text)
        if published:
            mark("publish")
        return published

    def traced_take(self: Any) -> Any:
        mark_reply(self, "publish>")
        return take(self)

    def traced_sent(self: Any) -> None:
        mark_reply(self, "publish")
        sent(self)

    setattr(api_messages, "bearer", traced_bearer)  # noqa: B010
    wrap(api_messages, "get_sender_conversation", "conversation")
    chat.send_message = traced_send
    for attr, name in (
        ("plan_reply", "plan_reply"),
        ("lock_thread", "lock_thread"),
        ("resolve_parent", "resolve_parent"),
        ("add_generation", "add_generation"),
        ("_job", "job"),
    ):
        wrap(chat, attr, name)
    wrap(callbacks, "message_created", "message_created")
    wrap(AsyncSession, "commit", "commit", begin=True)
    wrap(runner.GenerationRunner, "_run", "run", begin=True)
    wrap(openai_chat.OpenAIAdapter, "_send", "upstream", begin=True)
    agent_loop.DeltaPublisher.push = traced_push  # type: ignore[method-assign]
    agent_loop.DeltaPublisher._publish_now = traced_publish_now  # type: ignore[method-assign]
    agent_loop.DeltaPublisher.take = traced_take  # type: ignore[method-assign]
    agent_loop.DeltaPublisher.sent = traced_sent  # type: ignore[method-assign]
    for bus in (memory.MemoryEventBus, redis_bus.RedisEventBus):
        bus.publish = traced_publish(bus.publish)  # type: ignore[method-assign]

    def dump(*_: Any) -> None:
        path = Path(os.environ[TRACE_FILE_ENV])
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(filed))
        partial.replace(path)
        filed.clear()

    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["relaychat", *sys.argv[1:]]
    from relaychat.cli import main

    main()


@contextlib.asynccontextmanager
async def traced_server(
    backend: Backend, workdir: Path, *, fake_port: int, env: dict[str, str]
) -> AsyncIterator[Proc]:
    """Like `relaychat_server`, through `serve_traced`."""
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    config = data_dir / "relaychat.yaml"
    write_config(config, fake_port)
    port = free_port()
    full_env = {
        **server_env(backend, data_dir, config),
        **env,
        TRACE_FILE_ENV: str(workdir / f"trace-{port}.json"),
        "PYTHONPATH": REPO,
    }
    code = "from bench.ttft import serve_traced; serve_traced()"
    args = [sys.executable, "-c", code, "serve", "--host", HOST, "--port", str(port)]
    async with child(
        "relaychat-traced", args, port=port, env=full_env, workdir=workdir, cpus=ALL_CPUS,
        ready_path="/healthz",
    ) as proc:  # fmt: skip
        yield proc


async def read_traces(proc: Proc, workdir: Path) -> dict[str, dict[str, float]]:
    """The traced server's marks since the last read, by reply id."""
    path = workdir / f"trace-{proc.port}.json"
    os.kill(proc.pid, signal.SIGUSR2)
    for _ in range(500):
        await asyncio.sleep(0.02)
        if path.exists():
            traces: dict[str, dict[str, float]] = json.loads(path.read_text())
            path.unlink()
            return traces
    raise TimeoutError(f"{proc.name} wrote no traces to {path}")


def print_trace(samples: list[Sample], traces: dict[str, dict[str, float]]) -> None:
    """p50 / p99 of each step, over the replies the server traced."""
    rows = []
    joined = []
    for sample in samples:
        trace = traces.get(sample.message_id or "")
        if trace is None:
            continue
        marks = {**trace, "sent": sample.sent, "read": sample.sent + sample.first}
        if sample.answered is not None:
            marks["answered"] = sample.sent + sample.answered
        joined.append(marks)
    if not joined:
        print("  (no traced replies)")
        return
    for label, begin, end in TRACE_STEPS:
        took = [m[end] - m[begin] for m in joined if begin in m and end in m]
        if took:
            rows.append([label, len(took), ms(percentile(took, 0.5)), ms(percentile(took, 0.99))])
    print(
        f"\n  where the time to the first delta went, {len(joined)} traced replies (serve_traced):"
    )
    print(table(["step", "replies", "p50 ms", "p99 ms"], rows))


# -- the run ------------------------------------------------------------------------------


async def bench_backend(
    backend: Backend, args: argparse.Namespace, fake: Proc, workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, fake + client on {load_cpus}")
    start = traced_server if args.trace else relaychat_server
    async with start(backend, workdir, fake_port=fake.port, env=extra_env(args)) as server:
        started = time.monotonic()
        users = await make_users(server.port, args.streams + 1)  # the last one probes
        print(f"  {len(users)} users signed in ({time.monotonic() - started:.1f} s)")
        pin(server.pid, server_cpus)
        pin(0, load_cpus)
        listeners = await bounded((Listener.open(server.port, u.token) for u in users), 32)
        try:
            bench = Bench(args, backend, fake, server, users, listeners, workdir)
            rows = {name.strip() for name in args.rows.split(",")}
            for name, measure in (("one", bench.one), ("burst", bench.burst), ("busy", bench.busy)):
                if name in rows:
                    await measure()
        finally:
            for listener in listeners:
                await listener.close()
            pin(0, ALL_CPUS)
            error = first_error(server)
            if error:
                print(f"  the server logged errors; the first:\n{error}")


@dataclass
class Bench:
    args: argparse.Namespace
    backend: Backend
    fake: Proc
    server: Proc
    users: list[BenchUser]
    listeners: list[Listener]
    workdir: Path

    @property
    def pids(self) -> dict[str, list[int]]:
        return {"relaychat": [self.server.pid], "fake+client": [self.fake.pid, os.getpid()]}

    def make(self, side: str, prompt: str, index: int) -> Scenario:
        if side == "direct":
            return Direct(prompt=prompt, port=self.fake.port)
        user, listener = self.users[index], self.listeners[index]
        return Relayed(prompt=prompt, port=self.server.port, user=user, listener=listener)

    async def report(
        self,
        title: str,
        pooled: dict[str, PhaseResult],
        rows: dict[str, float],
        during: str,
        paths: list[Path],
        profiled_seconds: float,
    ) -> None:
        """A row's figures and verdicts, then its --trace steps and --profile shares."""
        summarize(title, pooled, rows, self.backend)
        await self.traced(pooled["relaychat"].samples)
        if paths:
            print_profile(during, paths, profiled_seconds, self.args.profile_out)

    async def traced(self, samples: list[Sample]) -> None:
        if self.args.trace:
            print_trace(samples, await read_traces(self.server, self.workdir))

    def profiled(
        self, name: str, paths: list[Path]
    ) -> contextlib.AbstractAsyncContextManager[object]:
        if not self.args.profile:
            return contextlib.nullcontext()
        path = self.workdir / f"profile-{self.backend.key}-{name}-{len(paths)}.txt"
        paths.append(path)
        return py_spy_record(self.server.pid, path)

    async def one(self) -> None:
        """One user, short replies one after another, in alternating blocks."""
        prompt = fake_directive(reply=ONE_REPLY, token_delay_ms=1) + "\nHello"
        blocks, per_block = (4, 25) if self.args.quick else (8, 40)
        pooled = {"direct": PhaseResult(), "relaychat": PhaseResult()}
        for block in range(blocks + 1):  # the first block of each side is a warm-up
            for side, total in pooled.items():
                result = PhaseResult()
                async with measured(result, self.pids):
                    await one_stream(self.make(side, prompt, 0), per_block, result)
                if block:
                    total.add(result)
        title = f"one reply at a time, {len(ONE_REPLY.split())} tokens"
        summarize(title, pooled, {"ttft.one_p50": 0.5}, self.backend)
        await self.traced(pooled["relaychat"].samples)

    async def burst(self) -> None:
        """All users post in the same instant; rounds alternate with the direct ones."""
        n = self.args.streams
        prompt = fake_directive(reply=BURST_REPLY, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"
        rounds = 2 if self.args.quick else 4
        pooled = {"direct": PhaseResult(), "relaychat": PhaseResult()}
        paths: list[Path] = []
        profiled = 0.0
        for round_ in range(rounds + 1):  # the first round of each side is a warm-up
            for side, total in pooled.items():
                scenarios = [self.make(side, prompt, i) for i in range(n)]
                result = PhaseResult()
                watch = side == "relaychat" and round_ > 0
                spy = self.profiled("burst", paths) if watch else contextlib.nullcontext()
                async with spy, measured(result, self.pids):
                    await burst(scenarios, result)
                if watch:
                    profiled += result.wall
                for scenario in scenarios:
                    await scenario.close()
                if round_:
                    total.add(result)
                await asyncio.sleep(1.0)  # the replies' ends are written
        title = (
            f"{n} replies started in the same instant, {BURST_TOKENS} tokens at "
            f"{1000 // TOKEN_DELAY_MS} tokens/s, {rounds} rounds"
        )
        rows = {"ttft.burst_p50": 0.5, "ttft.burst_p99": 0.99}
        during = f"during the {rounds} relaychat burst rounds"
        await self.report(title, pooled, rows, during, paths, profiled)

    async def busy(self) -> None:
        """One user's new messages while the others' replies stream, alternating sides."""
        n = self.args.streams
        window = 8.0 if self.args.quick else 10.0
        repeats = 1 if self.args.quick else 2
        tokens = round((BUSY_RAMP + BUSY_SETTLE + window + BUSY_MARGIN) * 1000 / TOKEN_DELAY_MS)
        reply = " ".join(f"w{i}" for i in range(tokens))
        long_prompt = fake_directive(reply=reply, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"
        probe_prompt = fake_directive(reply=ONE_REPLY, token_delay_ms=TOKEN_DELAY_MS) + "\nHi"
        pooled = {"direct": PhaseResult(), "relaychat": PhaseResult()}
        paths: list[Path] = []
        for repeat in range(repeats):
            for side, total in pooled.items():
                background = [self.make(side, long_prompt, i) for i in range(n)]
                probe = self.make(side, probe_prompt, n)
                result = PhaseResult()
                watch = side == "relaychat"
                async with measured(result, self.pids):
                    await busy(
                        background,
                        probe,
                        window,
                        result,
                        seed=repeat,
                        during_window=(lambda: self.profiled("busy", paths)) if watch else None,
                    )
                total.add(result)
                await asyncio.sleep(1.0)
        title = (
            f"one user's new messages while {n} replies stream at "
            f"{1000 // TOKEN_DELAY_MS} tokens/s, {repeats} x {window:.0f} s windows"
        )
        rows = {"ttft.busy_p50": 0.5, "ttft.busy_p99": 0.99}
        during = "during the relaychat busy windows"
        await self.report(title, pooled, rows, during, paths, window * repeats)


async def main(args: argparse.Namespace) -> None:
    await on_each_backend("ttft", args, bench_backend)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite,pg")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams")
    parser.add_argument(
        "--profile", action="store_true", help="sample relaychat with py-spy (burst, busy)"
    )
    parser.add_argument(
        "--rows", default="one,burst,busy", help="which of one, burst, busy to measure"
    )
    parser.add_argument("--profile-out", type=Path, help="a folder to keep py-spy's stacks in")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run relaychat through serve_traced and print where each reply's start went",
    )
    run(main, parser.parse_args())
