"""Throughput of external messages (inject only), against a bare FastAPI POST.

relaychat: 64 keep-alive connections post `{"role": "external", "content": [...],
"respond": false}` to `POST /api/messages/{id}` with the system key (`x-api-key`, from
`EXTERNAL_MESSAGE_API_KEY`) as fast as they are answered, into one conversation of a
registered user whose `/api/events` stream is open: every request is a durable insert and
one `message.created` on that stream, whose arrival is checked message by message.

Baseline: a bare FastAPI app (one POST route that parses the same body with a pydantic
model and answers 202) run by uvicorn in a subprocess as `relaychat serve` runs it, pinned
to the same core, driven by the same client over the same connections. The two alternate
in phases of a fixed duration, so machine noise hits them alike.

Reported for both: requests/s, p50/p99 latency, server CPU per request (and how much of it
in the kernel, context switches per request), how busy the server core was, with what
else (the machine may be shared: the CPU ratio is the steadier figure) and the client's
core. Targets (`bench.targets`): relaychat >= 40% of the baseline's requests/s, p99 <= 50 ms.

Then how much of a request is the database: an instrumented server (the same code run
through `serve_instrumented`, which hooks SQLAlchemy) times every session call, pool
checkout, flush and COMMIT, in wall time and CPU, one request at a time and at 64
connections. `--profile` also samples relaychat with py-spy (at 64 connections and at one)
and prints where the Python CPU goes.

relaychat and the baseline run alone on the last core, this load generator on the others.

    uv run python -m bench.gateway [--quick] [--backends sqlite,pg] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from bench import targets
from bench.common import (
    ALL_CPUS,
    REQUEST_SECONDS,
    Backend,
    Connection,
    Proc,
    add_common_args,
    backends,
    bounded,
    child,
    cores,
    cpu_seconds,
    extra_env,
    fake_upstream,
    first_error,
    make_user,
    open_events,
    percentile,
    pin,
    relaychat_server,
    run,
    server_env,
    sse_events,
    table,
    workspace,
)
from tests.support.live import HOST, free_port

CONNECTIONS = 64
API_KEY = "bench-" + "9" * 58
TEXT = "This is a test external message with structured content"
BODY = json.dumps(
    {"role": "external", "content": [{"type": "text", "text": TEXT}], "respond": False}
).encode()
# With a reply: the conversation's model answers (the fake upstream, REPLY_TOKENS words as
# fast as it can send them) and `Prefer: wait` holds the answer until the reply has ended,
# so a request is the whole round: the message, the generation, every token relayed.
REPLY_TOKENS = 20
REPLY = " ".join(f"word{n}" for n in range(REPLY_TOKENS))
REPLY_BODY = json.dumps(
    {"role": "external", "content": [{"type": "text", "text": TEXT}], "respond": True}
).encode()
MESSAGE_ID = re.compile(rb'"message_id":\s*"([^"]+)"')
REPO = str(Path(__file__).resolve().parent.parent)  # for the servers to import bench.gateway


# -- the baseline app (imported by its own uvicorn process) ------------------------------


class Part(BaseModel):
    type: Literal["text"]
    text: str


class Inbound(BaseModel):
    role: Literal["external"]
    content: list[Part]
    respond: bool = True
    metadata: dict[str, Any] = {}


def baseline_app() -> Any:
    """A bare FastAPI app: one POST route, the body parsed by a pydantic model, 202."""
    from fastapi import FastAPI, status

    app = FastAPI()

    @app.post("/api/messages/{conversation_id}", status_code=status.HTTP_202_ACCEPTED)
    async def post(conversation_id: str, body: Inbound) -> dict[str, Any]:
        return {"conversation_id": conversation_id, "accepted": len(body.content)}

    return app


@contextlib.asynccontextmanager
async def baseline_server(workdir: Path, cpus: set[int] | None) -> AsyncIterator[Proc]:
    """The baseline app under uvicorn, started with the arguments `relaychat serve` uses."""
    port = free_port()
    code = (
        "import uvicorn; uvicorn.run('bench.gateway:baseline_app', factory=True, "
        f"host='{HOST}', port={port}, workers=1, log_level='info', "
        "timeout_graceful_shutdown=5)"
    )
    env = {**os.environ, "PYTHONPATH": REPO}

    async with child(
        "baseline", [sys.executable, "-c", code], port=port, env=env, workdir=workdir,
        cpus=cpus, ready_path="/openapi.json",
    ) as proc:  # fmt: skip
        yield proc


# -- the load -----------------------------------------------------------------------------


def raw_post(port: int, path: str, headers: dict[str, str], body: bytes = BODY) -> bytes:
    """One whole request, built once: the client only writes it and reads the answer."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


@dataclass
class Load:
    """What one side got over one or more phases."""

    requests: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    server_sys: float = 0.0  # ... of which in the kernel
    switches: int = 0  # context switches of the server's threads
    others: float = 0.0  # CPU seconds other processes took on the server's core
    latencies: list[float] = field(default_factory=list)
    phase_rps: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    posted: int = 0  # relaychat: messages whose id came back
    delivered: int = 0  # ... and whose message.created reached the stream

    def add(self, other: Load) -> None:
        self.requests += other.requests
        self.wall += other.wall
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu
        self.server_sys += other.server_sys
        self.switches += other.switches
        self.others += other.others
        self.latencies += other.latencies
        self.phase_rps += other.phase_rps
        self.errors.update(other.errors)
        self.first_error = self.first_error or other.first_error
        self.posted += other.posted
        self.delivered += other.delivered

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1e3 if self.latencies else float("nan")


async def drive(
    port: int,
    request: bytes | list[bytes],
    connections: int,
    seconds: float,
    pid: int,
    ids: list[bytes] | None = None,
) -> Load:
    """`connections` keep-alive connections, each posting as soon as it is answered (with
    a list of requests, connection n posts the n-th, round the list).

    Also notes how busy the server's core was with other processes meanwhile (the machine
    may be shared): its busy time from /proc/stat minus the server's own CPU.
    """
    core = SERVER_CORE
    conns = await bounded((Connection.open(port) for _ in range(connections)), 16)
    load = Load()
    latencies = load.latencies

    requests = request if isinstance(request, list) else [request]

    async def worker(conn: Connection, request: bytes) -> None:
        write, response = conn.writer.write, conn.response
        while (started := time.perf_counter()) < deadline:
            write(request)
            try:
                answer = await response()
            except (OSError, asyncio.IncompleteReadError) as exc:
                load.errors[type(exc).__name__] += 1
                return
            latencies.append(time.perf_counter() - started)
            if 200 <= answer.status < 300:
                if ids is not None and (found := MESSAGE_ID.search(answer.body)):
                    ids.append(found.group(1))
            else:
                load.errors[str(answer.status)] += 1
                load.first_error = load.first_error or f"{answer.status} {answer.body[:300]!r}"

    gc.collect()
    server_cpu, client_cpu = cpu_seconds(pid), cpu_seconds(os.getpid())
    busy, sys_cpu, switches = core_busy(core), system_seconds(pid), context_switches(pid)
    begin = time.perf_counter()
    deadline = begin + seconds
    try:
        async with asyncio.timeout(seconds + REQUEST_SECONDS):
            await asyncio.gather(
                *(worker(conn, requests[n % len(requests)]) for n, conn in enumerate(conns))
            )
    except TimeoutError:
        load.errors["no answer in 30 s"] += 1
    finally:
        load.wall = time.perf_counter() - begin
        load.client_cpu = cpu_seconds(os.getpid()) - client_cpu
        load.others = max(0.0, core_busy(core) - busy - (cpu_seconds(pid) - server_cpu))
        for conn in conns:
            conn.close()
    load.requests = len(latencies)
    load.phase_rps.append(load.rps)
    await asyncio.sleep(0.2)  # the server's trailing work (audit batch, event writes)
    load.server_cpu = cpu_seconds(pid) - server_cpu
    load.server_sys = system_seconds(pid) - sys_cpu
    load.switches = context_switches(pid) - switches
    return load


# The core `cores()` gives the servers (read before this process pins itself elsewhere).
SERVER_CORE = max(ALL_CPUS) if len(ALL_CPUS) > 1 else None


def core_busy(core: int | None) -> float:
    """Seconds `core` was busy (or stolen by the hypervisor) since boot; 0 when unknown."""
    if core is None:
        return 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return 0.0


def system_seconds(pid: int) -> float:
    """Kernel CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Context switches (voluntary and not) of the live threads of a process."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.endswith(tuple("0123456789")) and "ctxt_switches" in line:
                    total += int(line.split()[1])
    return total


class CreatedEvents:
    """Reads the owner's /api/events and notes the id of every `message.created`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ids: set[bytes] = set()
        self._seen = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in sse_events(self.conn):
                if event.event == "message.created" and (found := MESSAGE_ID.search(event.data)):
                    self.ids.add(found.group(1))
                    self._seen.set()
        finally:
            self._seen.set()  # the stream ended: wake whoever waits

    @property
    def ended(self) -> bool:
        return self._task.done()

    async def arrived(self, ids: list[bytes], limit: float = 10.0) -> int:
        """How many of `ids` were seen, waiting up to `limit` seconds for stragglers."""
        wanted = set(ids)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not wanted <= self.ids and not self.ended:
                    self._seen.clear()
                    await self._seen.wait()
        return len(wanted & self.ids)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.conn.close()


@dataclass
class Target:
    """A server under load: where to post, and how."""

    name: str
    proc: Proc
    request: bytes | list[bytes]
    events: CreatedEvents | None = None

    async def phase(self, connections: int, seconds: float) -> Load:
        ids: list[bytes] | None = [] if self.events else None
        load = await drive(self.proc.port, self.request, connections, seconds, self.proc.pid, ids)
        if self.events is not None and ids is not None:
            load.posted = len(ids)
            load.delivered = await self.events.arrived(ids)
        return load


async def relaychat_target(proc: Proc, name: str = "relaychat") -> Target:
    """A registered user with a conversation, its event stream open, and the request."""
    user = await make_user(proc.port, f"gateway-{os.urandom(4).hex()}@example.com")
    path = f"/api/messages/{user.conversation_id}"
    request = raw_post(proc.port, path, {"x-api-key": API_KEY})
    events = CreatedEvents(await open_events(proc.port, user.token))
    return Target(name, proc, request, events)


async def reply_target(proc: Proc) -> Target:
    """Another user with a conversation per connection (one sender each, as an SMS burst
    from many numbers: one conversation's history, sent to the model with every message,
    would grow by all of them), whose event stream sees the replies stream too."""
    user = await make_user(proc.port, f"gateway-reply-{os.urandom(4).hex()}@example.com")
    headers = {"x-api-key": API_KEY, "prefer": "wait=60"}
    conn = await Connection.open(proc.port)
    requests = []
    try:
        for _ in range(CONNECTIONS):
            body = {"endpoint": "fake", "title": "bench"}
            answer = await conn.request("POST", "/api/convos", json_body=body, token=user.token)
            path = f"/api/messages/{answer.json()['conversation_id']}"
            requests.append(raw_post(proc.port, path, headers, REPLY_BODY))
    finally:
        conn.close()
    events = CreatedEvents(await open_events(proc.port, user.token))
    return Target("relaychat, replying", proc, requests, events)


def baseline_target(proc: Proc) -> Target:
    path = "/api/messages/5c79d482-9b80-45f6-bbf2-9abe17335e55"
    return Target("bare FastAPI", proc, raw_post(proc.port, path, {"x-api-key": API_KEY}))


# -- the instrumented server: where a request's database time goes ------------------------

SPLIT_FILE_ENV = "BENCH_GATEWAY_SPLIT_FILE"


def serve_instrumented() -> None:
    """`relaychat serve` with timing hooks on SQLAlchemy (runs in the server process).

    Each hook adds the wall time and the process CPU time of what it wraps. SIGUSR1 zeroes
    the counters; SIGUSR2 writes them as JSON to $BENCH_GATEWAY_SPLIT_FILE. With one
    request in flight the CPU figures are that request's; with many they are not.
    """
    import contextvars

    from sqlalchemy import event
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import Pool, QueuePool

    stats: defaultdict[str, float] = defaultdict(float)
    wall, cpu = time.perf_counter, time.process_time
    inside = contextvars.ContextVar("inside_session_call", default=False)

    def add(name: str, started: tuple[float, float]) -> None:
        took = wall() - started[0]
        stats[f"{name}_s"] += took
        stats[f"{name}_cpu"] += cpu() - started[1]
        stats[f"{name}_n"] += 1
        stats[f"{name}_max"] = max(stats[f"{name}_max"], took)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = wall(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                add(name, started)

        return wrapper

    def timed_session(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if inside.get():  # scalars() -> execute(): count the outer call only
                return await fn(*args, **kwargs)
            token, started = inside.set(True), (wall(), cpu())
            try:
                return await fn(*args, **kwargs)
            finally:
                add(name, started)
                add("session_all", started)
                inside.reset(token)

        return wrapper

    for method in ("get", "scalar", "scalars", "execute", "commit", "close", "rollback"):
        original = getattr(AsyncSession, method)
        setattr(AsyncSession, method, timed_session(f"session_{method}", original))
    Pool.connect = timed("checkout", Pool.connect)  # type: ignore[method-assign]
    QueuePool._do_get = timed("pool_wait", QueuePool._do_get)  # type: ignore[method-assign]
    for cls in (AsyncAdapt_asyncpg_connection, AsyncAdapt_aiosqlite_connection):
        cls.commit = timed("dbapi_commit", cls.commit)  # type: ignore[method-assign]
        cls.rollback = timed("dbapi_rollback", cls.rollback)  # type: ignore[method-assign]

    @event.listens_for(Session, "before_flush")
    def _before_flush(session: Session, *_: Any) -> None:
        session.info["bench_flush"] = wall(), cpu()

    @event.listens_for(Session, "after_flush_postexec")
    def _after_flush(session: Session, *_: Any) -> None:
        add("flush", session.info.pop("bench_flush"))

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_statement"] = wall(), cpu()

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        add(statement.lstrip().split(None, 1)[0].lower(), conn.info.pop("bench_statement"))

    def reset(*_: Any) -> None:
        stats.clear()

    def dump(*_: Any) -> None:
        path = Path(os.environ[SPLIT_FILE_ENV])
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(stats))
        partial.replace(path)

    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["relaychat", *sys.argv[1:]]
    from relaychat.cli import main

    main()


def _instrumented_setup(backend: Backend, workdir: Path) -> tuple[Path, dict[str, str]]:
    """A fresh data dir with a config naming endpoint `fake` (never called: no replies)."""
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    config = data_dir / "relaychat.yaml"
    config.write_text(
        "endpoints:\n  custom:\n    - name: fake\n"
        f"      base_url: http://{HOST}:{free_port()}/v1\n      api_key: fake-key\n"
        "      models: {default: [fake-model], fetch: false}\n"
    )
    split_file = workdir / f"split-{os.urandom(4).hex()}.json"
    return split_file, server_env(backend, data_dir, config)


@contextlib.asynccontextmanager
async def instrumented_server(
    backend: Backend, workdir: Path, env: dict[str, str]
) -> AsyncIterator[tuple[Proc, Path]]:
    """Like `relaychat_server`, through `serve_instrumented`; also its counters' file."""
    split_file, base_env = _instrumented_setup(backend, workdir)
    full_env = {**base_env, **env, SPLIT_FILE_ENV: str(split_file), "PYTHONPATH": REPO}
    port = free_port()
    code = "from bench.gateway import serve_instrumented; serve_instrumented()"
    args = [sys.executable, "-c", code, "serve", "--host", HOST, "--port", str(port)]

    async with child(
        "relaychat-instrumented", args, port=port, env=full_env, workdir=workdir,
        cpus=ALL_CPUS, ready_path="/healthz",
    ) as proc:  # fmt: skip
        yield proc, split_file


def _take_split(path: Path) -> dict[str, float] | None:
    if not path.exists():
        return None
    stats: dict[str, float] = json.loads(path.read_text())
    path.unlink()
    return stats


async def read_split(proc: Proc, path: Path) -> dict[str, float]:
    """Ask the instrumented server for its counters (SIGUSR2) and read them."""
    os.kill(proc.pid, signal.SIGUSR2)
    for _ in range(500):
        await asyncio.sleep(0.02)
        if (stats := _take_split(path)) is not None:
            return stats
    raise TimeoutError(f"{proc.name} wrote no counters to {path}")


@dataclass
class Split:
    """The instrumented server's counters over one phase."""

    connections: int
    load: Load
    stats: dict[str, float]

    def per_request(self, name: str, kind: str = "s") -> float:
        """ms (kind "s": wall, "cpu": process CPU) or count ("n") per request."""
        scale = 1.0 if kind == "n" else 1e3
        return self.stats.get(f"{name}_{kind}", 0.0) / max(1, self.load.requests) * scale


async def measure_split(
    backend: Backend, args: argparse.Namespace, workdir: Path, server_cpus: set[int] | None
) -> list[Split]:
    """One request at a time, then 64 connections, on the instrumented server."""
    load_cpus = set(ALL_CPUS) - (server_cpus or set()) or None
    async with instrumented_server(backend, workdir, server_env_of(args)) as (proc, path):
        target = await relaychat_target(proc, "relaychat (instrumented)")
        pin(proc.pid, server_cpus)
        pin(0, load_cpus)
        splits = []
        try:
            await target.phase(CONNECTIONS, 1.0)  # warm-up
            for connections in (1, CONNECTIONS):
                os.kill(proc.pid, signal.SIGUSR1)
                await asyncio.sleep(0.1)
                load = await target.phase(connections, args.seconds)
                splits.append(Split(connections, load, await read_split(proc, path)))
        finally:
            if target.events:
                await target.events.close()
            pin(0, ALL_CPUS)
            report_server_errors(proc)
    return splits


# -- profile (py-spy) ---------------------------------------------------------------------

PROFILE_HZ = 100

# (label, substrings of frames): a sample counts when any frame of its stack has one.
# py-spy names frames "Qual.name (package/file.py:line)". The synchronous SQLAlchemy code
# run in greenlets, and stacks torn by --nonblocking, do not always show their callers:
# the relaychat rows are lower bounds; the SQLAlchemy and driver rows are not.
INCLUSIVE: list[tuple[str, tuple[str, ...]]] = [
    ("gateway handle()", ("handle (relaychat/gateway/external.py",)),
    ("  keys.authenticate", ("authenticate (relaychat/domain/access/keys.py",)),
    ("  external.accept", ("accept (relaychat/domain/intake/external.py",)),
    ("    resolve_owner", ("resolve_owner (relaychat/domain/intake/resolution.py",)),
    ("    send_message", ("send_message (relaychat/domain/messaging/chat.py",)),
    ("      resolve_parent (latest message)", ("resolve_parent (relaychat/",)),
    ("      bus.publish", ("publish (relaychat/realtime/",)),
    ("  audit finish", ("finish (relaychat/gateway/request_audit.py",)),
    # pydantic's core is compiled: only the models' Python validators show (a lower bound).
    ("  entity models (resources)", ("(relaychat/resources.py",)),
    ("SQLAlchemy, all", ("(sqlalchemy/",)),
    ("  session commit (flush + COMMIT)", ("AsyncSession.commit (", "Session.commit (sqlalchemy")),
    ("    flush", ("Session.flush (sqlalchemy/orm/session.py",)),
    ("  session get / scalar / execute", ("AsyncSession.get (", "AsyncSession.scalar (")),
    ("  session create / close", ("async_sessionmaker.__call__", "AsyncSession.close (")),
    ("  pool checkout / return", ("(sqlalchemy/pool/",)),
    ("DB driver (aiosqlite / asyncpg)", ("(aiosqlite/", "(asyncpg/")),
    ("FastAPI solve_dependencies", ("solve_dependencies (fastapi/dependencies/utils.py",)),
    ("  sync dependencies via the thread pool", ("run_in_threadpool (", "(anyio/")),
    ("logging (uvicorn's access log)", ("(logging/",)),
    ("Redis client", ("(redis/",)),
    ("audit writer (batched)", ("AuditWriter._write_all",)),
    ("SSE stream of the listener", ("(relaychat/realtime/sse.py",)),
]

PACKAGES = {
    "sqlalchemy", "aiosqlite", "sqlite3", "asyncpg", "redis", "pydantic", "fastapi",
    "starlette", "anyio", "uvicorn", "relaychat", "logging", "json", "asyncio", "threading",
    "concurrent", "greenlet", "uuid", "typing",
}  # fmt: skip
EVENT_LOOP = "Runner.run (asyncio/runners.py"  # innermost Python frame while uvloop's C runs


def py_spy() -> list[str] | None:
    if found := shutil.which("py-spy"):
        return [found]
    if uvx := shutil.which("uvx"):
        return [uvx, "py-spy"]
    return None


def package_of(frame: str) -> str:
    """The top-level package of a py-spy frame "name (package/file.py:line)"."""
    if EVENT_LOOP in frame:
        return "uvloop / httptools (C, under Runner.run)"
    top = frame.rpartition(" (")[2].split("/", 1)[0].split(".", 1)[0]
    return top if top in PACKAGES else "other"


def keep_profile(out: Path, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, folder / name)


def read_lines(path: Path) -> list[str] | None:
    return path.read_text().splitlines() if path.exists() else None


async def profile(
    target: Target,
    args: argparse.Namespace,
    workdir: Path,
    tag: str,
    connections: int,
    *,
    blocking: bool | None = None,
) -> None:
    """py-spy on the server while it takes the load; prints the shares of samples.

    Only the thread holding the GIL is sampled (--gil): where the Python CPU goes. At 64
    connections the server has ~50 threads (aiosqlite's, the thread pool's), and pausing
    them all at every sample would halve its throughput, so it samples without pausing
    (--nonblocking) and some stacks come out torn; with one connection it pauses, and the
    stacks are whole.
    """
    command = py_spy()
    if command is None:
        print("  --profile: py-spy not found (pip install py-spy, or install uv for uvx)")
        return
    out = workdir / f"profile-{tag}-{connections}.txt"
    seconds = max(3, round(args.seconds * 2))
    blocking = connections == 1 if blocking is None else blocking
    spy = await asyncio.create_subprocess_exec(
        *command, "record", "--pid", str(target.proc.pid), "--rate", str(PROFILE_HZ),
        "--threads", "--gil", *([] if blocking else ["--nonblocking"]),
        "--duration", str(seconds), "--format", "raw", "--output", str(out),
        stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # attached
    load = await target.phase(connections, seconds + 1)
    _, err = await spy.communicate()
    lines = read_lines(out)
    if spy.returncode or lines is None:
        print(f"  py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-400:]}")
        return
    if args.profile_out:
        keep_profile(out, args.profile_out, f"gateway-{tag}-{connections}.txt")
    print(
        f"\n  profile of relaychat at {connections} connection{'s' * (connections > 1)} "
        f"({load.rps:.0f} req/s, {cpu_us(load):.0f} us CPU/req while sampled), py-spy --gil"
        f"{'' if blocking else ' --nonblocking'} at {PROFILE_HZ} Hz for {seconds} s:"
    )
    print_profile(lines, PROFILE_HZ * seconds)


def print_profile(lines: list[str], expected: int) -> None:
    """Shares of the samples: by package of the innermost frame, inclusive, innermost."""
    stacks: list[tuple[str, list[str], int]] = []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            thread, *frames = stack.split(";")
            stacks.append((thread, frames, int(count)))
    total = sum(n for *_, n in stacks)
    if not total:
        print("  (no samples)")
        return
    threads: Counter[str] = Counter()
    package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for thread, frames, n in stacks:
        threads["event loop thread" if "MainThread" in thread else "other threads"] += n
        leaf = frames[-1] if frames else "(no frame)"
        package[package_of(leaf)] += n
        own[re.sub(r":\d+\)$", ")", leaf)] += n
        for label, patterns in INCLUSIVE:
            if any(p in frame for frame in frames for p in patterns):
                inclusive[label] += n
    print(
        f"  {total} samples holding the GIL (~{min(1, total / expected):.0%} of the time): "
        + ", ".join(f"{name} {n / total:.0%}" for name, n in threads.most_common())
    )
    rows = [[name, f"{n / total:.1%}"] for name, n in package.most_common()]
    print("\n" + table(["package of the innermost frame", "samples"], rows))
    rows = [[label, f"{inclusive[label] / total:.1%}"] for label, _ in INCLUSIVE]
    print("\n" + table(["anywhere on the stack", "samples"], rows))
    rows = [[name[:100], f"{n / total:.1%}"] for name, n in own.most_common(20)]
    print("\n" + table(["innermost frame", "samples"], rows))


# -- the run ------------------------------------------------------------------------------


def server_env_of(args: argparse.Namespace) -> dict[str, str]:
    return {"EXTERNAL_MESSAGE_API_KEY": API_KEY, **extra_env(args)}


def report_server_errors(proc: Proc) -> None:
    error = first_error(proc)
    if error:
        print(f"  {proc.name} logged errors; the first:\n{error}")


async def bench_backend(
    backend: Backend, args: argparse.Namespace, baseline: Proc, workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: servers on cpu {server_cpus}, load generator on {load_cpus}")
    fake = fake_upstream(workdir, cpus=load_cpus, reply=REPLY)
    async with (
        fake as upstream,
        relaychat_server(
            backend, workdir, fake_port=upstream.port, env=server_env_of(args)
        ) as server,
    ):
        target = await relaychat_target(server)
        replying = await reply_target(server)
        base = baseline_target(baseline)
        pin(server.pid, server_cpus)
        pin(0, load_cpus)
        sides = (base, target, replying)
        pooled = {side.name: Load() for side in sides}
        try:
            for side in sides:  # warm-up: imports, pools, caches
                await side.phase(CONNECTIONS, 1.0)
            for _ in range(args.rounds):
                for side in sides:
                    pooled[side.name].add(await side.phase(CONNECTIONS, args.seconds))
            ended = target.events is not None and target.events.ended
            report(pooled[base.name], pooled[target.name], ended, backend.key)
            report_replies(pooled[base.name], pooled[replying.name], backend.key)
            if args.profile:
                for connections in (CONNECTIONS, 1):
                    await profile(target, args, workdir, backend.name, connections)
                # Paused at each sample: whole stacks; a replying request is slow enough.
                tag = f"{backend.name}-reply"
                await profile(replying, args, workdir, tag, CONNECTIONS, blocking=True)
        finally:
            if target.events:
                await target.events.close()
            pin(0, ALL_CPUS)
            report_server_errors(server)
    if not args.no_split:
        report_split(*await measure_split(backend, args, workdir, server_cpus))


def mean_ms(load: Load) -> float:
    return sum(load.latencies) / len(load.latencies) * 1e3 if load.latencies else 0.0


def cpu_us(load: Load) -> float:
    return load.server_cpu / max(1, load.requests) * 1e6


def share(seconds: float, load: Load) -> str:
    return f"{seconds / load.wall:.0%}" if load.wall else "-"


def summary_row(name: str, load: Load) -> list[object]:
    kernel = f"{load.server_sys / load.server_cpu:.0%}" if load.server_cpu else "-"
    return [
        name,
        load.requests,
        f"{load.rps:.0f}",
        f"{load.ms(0.5):.1f}",
        f"{load.ms(0.99):.1f}",
        f"{cpu_us(load):.0f}",
        kernel,
        f"{load.switches / max(1, load.requests):.1f}",
        share(load.server_cpu, load),
        share(load.others, load),
        share(load.client_cpu, load),
        sum(load.errors.values()),
    ]


def report(base: Load, relay: Load, stream_ended: bool, backend: str) -> None:
    headers = ["server", "requests", "req/s", "p50 ms", "p99 ms", "CPU/req us", "in kernel"]
    headers += ["switches/req", "server core", "others on it", "client core", "errors"]
    sides = (("bare FastAPI", base), ("relaychat", relay))
    rows = [summary_row(name, load) for name, load in sides]
    print(table(headers, rows))
    for name, load in sides:
        print(f"  {name} req/s by phase: {', '.join(f'{r:.0f}' for r in load.phase_rps)}")
        if load.errors:
            print(f"  {name} errors: {dict(load.errors)}; first: {load.first_error}")
    ratio = relay.rps / base.rps if base.rps else 0.0
    met = targets.record("gateway.share", backend, ratio * 100)
    print(f"  relaychat / baseline requests/s: {ratio:.1%}   {met}")
    if cpu_us(relay):
        print(
            f"  by CPU per request (what a core of its own would give): "
            f"{cpu_us(base) / cpu_us(relay):.1%}"
        )
    p99 = relay.ms(0.99)
    met = targets.record("gateway.p99", backend, p99)
    print(f"  relaychat p99 at {CONNECTIONS} connections: {p99:.1f} ms   {met}")
    missing = relay.posted - relay.delivered
    print(
        f"  message.created on the owner's stream: {relay.delivered} of {relay.posted} "
        + ("(all arrived)" if not missing and not stream_ended else f"({missing} MISSING)")
        + (" - the stream ENDED (dropped as a slow consumer?)" if stream_ended else "")
    )


def report_replies(base: Load, relay: Load, backend: str) -> None:
    print(f"\n  with a reply of {REPLY_TOKENS} tokens (`respond: true`, `Prefer: wait`):")
    print(table(["server", "requests", "req/s", "p50 ms", "p99 ms", "CPU/req us", "errors"], [
        [name, load.requests, f"{load.rps:.0f}", f"{load.ms(0.5):.1f}", f"{load.ms(0.99):.1f}",
         f"{cpu_us(load):.0f}", sum(load.errors.values())]
        for name, load in (("bare FastAPI", base), ("relaychat, replying", relay))
    ]))  # fmt: skip
    if relay.errors:
        print(f"  errors: {dict(relay.errors)}; first: {relay.first_error}")
    ratio = relay.rps / base.rps if base.rps else 0.0
    met = targets.record("gateway.reply_share", backend, ratio * 100)
    print(f"  relaychat replying / baseline requests/s: {ratio:.1%}   {met}")


# (label, counter names summed): rows of the split table.
SPLIT_ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("AsyncSession calls, all", ("session_all",)),
    ("  get (conversation, owner)", ("session_get",)),
    (
        "  scalar / execute (latest message)",
        ("session_scalar", "session_execute", "session_scalars"),
    ),
    ("  commit", ("session_commit",)),
    ("    flush (INSERT message, UPDATE conversation)", ("flush",)),
    ("      executing the INSERTs", ("insert",)),
    ("      executing the UPDATE", ("update",)),
    ("    COMMIT", ("dbapi_commit",)),
    ("  close", ("session_close",)),
    ("pool checkout (inside the first call)", ("checkout",)),
    ("  waiting for a free pooled connection", ("pool_wait",)),
]


def report_split(one: Split, many: Split) -> None:
    print(
        "\n  where a request's time goes: instrumented server, ms per request (its CPU only "
        "means\n  something with one request in flight):"
    )
    headers = ["", "1 conn wall", "1 conn CPU", f"{many.connections} conn wall"]
    rows: list[list[object]] = [
        ["requests/s", f"{one.load.rps:.0f}", "", f"{many.load.rps:.0f}"],
        ["whole request (mean latency; server CPU)", f"{mean_ms(one.load):.2f}",
         f"{cpu_us(one.load) / 1e3:.2f}", f"{mean_ms(many.load):.1f}"],
    ]  # fmt: skip
    for label, names in SPLIT_ROWS:
        rows.append(
            [
                label,
                f"{sum(one.per_request(n) for n in names):.2f}",
                f"{sum(one.per_request(n, 'cpu') for n in names):.2f}",
                f"{sum(many.per_request(n) for n in names):.1f}",
            ]
        )
    print(table(headers, rows))
    verbs = ", ".join(f"{one.per_request(v, 'n'):.2f} {v.upper()}" for v in SQL_VERBS)
    print(
        f"  per request: {verbs}; {one.per_request('session_commit', 'n'):.2f} commits, "
        f"{one.per_request('session_close', 'n'):.2f} sessions; the slowest COMMIT took "
        f"{one.stats.get('dbapi_commit_max', 0) * 1e3:.1f} ms (1 conn), "
        f"{many.stats.get('dbapi_commit_max', 0) * 1e3:.1f} ms ({many.connections} conn)"
    )
    request_ms, request_cpu = mean_ms(one.load), cpu_us(one.load) / 1e3
    if request_ms and request_cpu:
        print(
            f"  one request at a time: the commit is "
            f"{one.per_request('session_commit') / request_ms:.0%} of its time and "
            f"{one.per_request('session_commit', 'cpu') / request_cpu:.0%} of its CPU; all "
            f"session calls {one.per_request('session_all', 'cpu') / request_cpu:.0%} of its CPU"
        )
    print(
        f"  at {many.connections} connections: {many.per_request('pool_wait'):.0f} of the "
        f"{mean_ms(many.load):.0f} ms go to waiting for a pooled connection, "
        f"{many.per_request('session_commit'):.1f} ms to the commit"
    )


SQL_VERBS = ("select", "insert", "update")


async def main(args: argparse.Namespace) -> None:
    with workspace("gateway") as workdir:
        server_cpus, _ = cores()
        async with baseline_server(workdir, server_cpus) as baseline, backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, baseline, workdir)
            report_server_errors(baseline)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite,pg")
    parser.add_argument("--seconds", type=float, help="length of a phase (default 6; quick 3)")
    parser.add_argument("--rounds", type=int, help="phases of each side (default 3; quick 2)")
    parser.add_argument("--profile", action="store_true", help="also sample with py-spy")
    parser.add_argument("--profile-out", type=Path, help="a folder to keep py-spy's stacks in")
    parser.add_argument("--no-split", action="store_true", help="skip the instrumented server")
    parsed = parser.parse_args()
    parsed.seconds = parsed.seconds or (3.0 if parsed.quick else 6.0)
    parsed.rounds = parsed.rounds or (2 if parsed.quick else 3)
    run(main, parsed)
