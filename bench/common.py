"""Shared helpers of the end-to-end benchmarks: processes, backends, a lean HTTP client, stats.

Servers start and stop as in the tests (`tests.support.live`), and scratch PostgreSQL
databases and Redis prefixes come and go as theirs do (`tests.support.backends`).

The load generator speaks HTTP/1.1 over bare asyncio streams, so the client costs the same
few microseconds on both sides of every comparison (relaychat, and the fake upstream
straight), and a heavy client library does not hide what the server adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support import live
from tests.support.live import HOST, ChildProcess, free_port, running_child, serve_command

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "bench password 123"
STARTUP_SECONDS = 60.0
REQUEST_SECONDS = 30.0
T = TypeVar("T")
ALL_CPUS = set(os.sched_getaffinity(0))


# -- cores and processes ------------------------------------------------------------------


def cores() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load cores): relaychat alone on the last core, the rest on the others."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return {available[-1]}, set(available[:-1])


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of `pid` (0: this process) to `cpus`; new threads inherit it."""
    if not cpus:
        return
    pid = pid or os.getpid()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, dead ones included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """How many files (sockets included) a process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


# The same child process the tests start, with bench's name for it.
Proc = ChildProcess


def first_error(proc: Proc) -> str | None:
    """The first traceback in a process's log (its start and its end), or ERROR line, if any."""
    text = proc.log_path.read_text(errors="replace").splitlines()
    for start, line in enumerate(text):
        if line.startswith("ERROR"):
            return line
        if line.startswith("Traceback"):
            block = _traceback(text[start:])
            if len(block) > 16:
                block = [*block[:6], "  [...]", *block[-8:]]
            return "\n".join(block)
    return None


_CHAINED = ("The above exception", "During handling", "Traceback")


def _traceback(lines: list[str]) -> list[str]:
    """The traceback at the start of `lines`, chained ones included, to its last exception."""
    for n, line in enumerate(lines):
        if n and line.strip() and not line.startswith((" ", "\t", *_CHAINED)):
            following = next((x for x in lines[n + 1 :] if x.strip()), "")
            if not following.startswith(_CHAINED[:2]):
                return lines[: n + 1]
    return lines


@contextlib.asynccontextmanager
async def child(
    name: str,
    args: Sequence[str],
    *,
    port: int,
    env: dict[str, str],
    workdir: Path,
    cpus: set[int] | None,
    ready_path: str,
    ready_headers: dict[str, str] | None = None,
) -> AsyncIterator[Proc]:
    """Run `args` (pinned to `cpus` with taskset) until the block ends; wait for `ready_path`."""
    prefix: list[str] = []
    if cpus and shutil.which("taskset"):
        prefix = ["taskset", "-c", ",".join(str(c) for c in sorted(cpus))]
    async with running_child(
        name,
        [*prefix, *args],
        port=port,
        env=env,
        log_path=workdir / f"{name}-{port}.log",
        ready_path=ready_path,
        ready_headers=ready_headers,
        startup_seconds=STARTUP_SECONDS,
    ) as proc:
        yield proc


@contextlib.asynccontextmanager
async def fake_upstream(
    workdir: Path,
    *,
    cpus: set[int] | None,
    ttft_ms: int = 0,
    token_delay_ms: int = 0,
    reply: str | None = None,
) -> AsyncIterator[Proc]:
    """`relaychat dev fake-llm` on a free port."""
    port = free_port()
    args = [sys.executable, "-m", "relaychat", "dev", "fake-llm", "--host", HOST]
    args += [
        "--port",
        str(port),
        "--ttft-ms",
        str(ttft_ms),
        "--token-delay-ms",
        str(token_delay_ms),
    ]
    if reply is not None:
        args += ["--reply", reply]

    async with child(
        "fake", args, port=port, env=dict(os.environ), workdir=workdir, cpus=cpus,
        ready_path="/v1/models", ready_headers={"authorization": "Bearer fake-key"},
    ) as proc:  # fmt: skip
        yield proc


# -- storage backends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """Where a relaychat server keeps its data and sends its events."""

    name: str
    database_url: str | None = None  # None: SQLite in the data dir
    redis_url: str | None = None
    redis_prefix: str = "relaychat:"

    @property
    def key(self) -> str:
        """The name `--backends` and `bench.targets` use: "sqlite" or "pg"."""
        return "pg" if self.database_url else "sqlite"


SQLITE = Backend("sqlite+memory")


async def pg_redis_unavailable(pg_url: str, redis_url: str) -> str | None:
    """Why PostgreSQL + Redis cannot be used, or None when both answer."""
    # Imported here, as in pg_redis_backend: the servers gateway.py starts import this module.
    from redis.asyncio import Redis
    from sqlalchemy import text

    from relaychat.storage.db import create_engine

    engine = create_engine(pg_url)
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {pg_url}: {type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()
    redis = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(5):
            await redis.ping()
    except Exception as exc:
        return f"Redis at {redis_url}: {type(exc).__name__}: {exc}"
    finally:
        await redis.aclose()
    return None


@contextlib.asynccontextmanager
async def pg_redis_backend(pg_url: str, redis_url: str) -> AsyncIterator[Backend]:
    """A fresh PostgreSQL database and Redis key prefix, dropped and deleted afterwards."""
    from tests.support.backends import delete_keys, scratch_database

    tag = uuid.uuid4().hex[:10]
    prefix = f"relaychat-bench:{tag}:"
    try:
        async with scratch_database(pg_url, f"relaychat_bench_{tag}") as url:
            yield Backend("postgres+redis", url, redis_url, prefix)
    finally:
        await delete_keys(redis_url, prefix)


@contextlib.asynccontextmanager
async def backends(args: argparse.Namespace) -> AsyncIterator[list[Backend]]:
    """The backends asked for on the command line (`--backends`), ready to use."""
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    chosen: list[Backend] = []
    async with contextlib.AsyncExitStack() as stack:
        for name in names:
            if name == "sqlite":
                chosen.append(SQLITE)
            elif name == "pg":
                reason = await pg_redis_unavailable(args.pg_url, args.redis_url)
                if reason:
                    print(f"skipping postgres+redis: {reason}")
                    continue
                chosen.append(
                    await stack.enter_async_context(pg_redis_backend(args.pg_url, args.redis_url))
                )
            else:
                raise SystemExit(f"unknown backend {name!r} (sqlite, pg)")
        yield chosen


def add_common_args(parser: argparse.ArgumentParser, *, default_backends: str) -> None:
    """--quick, --backends, --pg-url, --redis-url."""
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument(
        "--backends",
        default=default_backends,
        help=f"comma-separated: sqlite (SQLite + memory bus), pg (PostgreSQL + Redis); "
        f"default {default_backends}",
    )
    parser.add_argument("--pg-url", default=PG_URL, help="a database to create others from")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the relaychat server, to try a setting (repeatable)",
    )


def extra_env(args: argparse.Namespace) -> dict[str, str]:
    """The --server-env settings as a dict."""
    pairs = [item.partition("=") for item in args.server_env]
    bad = [name for name, sep, _ in pairs if not sep or not name]
    if bad:
        raise SystemExit(f"--server-env wants NAME=VALUE, got {bad}")
    return {name: value for name, _, value in pairs}


# -- the relaychat server -----------------------------------------------------------------


def _write_config(path: Path, fake_port: int) -> None:
    path.write_text(
        f"""endpoints:
  custom:
    - name: fake
      base_url: http://{HOST}:{fake_port}/v1
      api_key: fake-key
      models: {{default: [fake-model], fetch: false}}
"""
    )


def write_config(path: Path, fake_port: int) -> None:
    """The server config `relaychat_server` writes (the fake as endpoint `fake`), for a
    benchmark that starts its server another way."""
    _write_config(path, fake_port)


def server_env(backend: Backend, data_dir: Path, config: Path) -> dict[str, str]:
    """The environment of a server on `backend` (nothing from the developer's own setup)."""
    return live.server_env(backend, data_dir, backend.redis_prefix, config=config)


@contextlib.asynccontextmanager
async def relaychat_server(
    backend: Backend, workdir: Path, *, fake_port: int, env: dict[str, str] | None = None
) -> AsyncIterator[Proc]:
    """`relaychat serve` on a free port with a fresh data dir and the fake as endpoint `fake`.

    It may use every core (setup hashes passwords with argon2) until pinned with
    `pin(server.pid, ...)` before measuring.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    config = data_dir / "relaychat.yaml"
    _write_config(config, fake_port)
    port = free_port()

    full_env = {**server_env(backend, data_dir, config), **(env or {})}
    async with child(
        "relaychat", serve_command(port), port=port, env=full_env, workdir=workdir,
        cpus=ALL_CPUS, ready_path="/healthz",
    ) as proc:  # fmt: skip
        yield proc


@contextlib.contextmanager
def workspace(prefix: str) -> Any:
    """A temporary directory for data dirs and logs, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"relaychat-{prefix}-") as path:
        yield Path(path)


# What a benchmark measures on one backend: given the backend, its arguments, the fake
# upstream and the work dir.
BackendBench = Callable[[Backend, argparse.Namespace, Proc, Path], Awaitable[None]]


async def on_each_backend(name: str, args: argparse.Namespace, measure: BackendBench) -> None:
    """`measure` on each chosen backend, beside one fake upstream on the load generator's
    cores, with the load average printed at the start and the end."""
    with workspace(name) as workdir:
        _, load_cpus = cores()
        print(f"  {load_average()} at the start")
        async with fake_upstream(workdir, cpus=load_cpus) as fake, backends(args) as chosen:
            for backend in chosen:
                await measure(backend, args, fake, workdir)
        print(f"\n  {load_average()} at the end")


# -- a lean HTTP/1.1 client ---------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection; requests go one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        self.reader = reader
        self.writer = writer
        self.host = f"{HOST}:{port}".encode()

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, port)

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Write one request (small: no drain needed)."""
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.host]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode())
        if body is not None:
            lines.append(b"Content-Type: application/json")
            lines.append(b"Content-Length: " + str(len(body)).encode())
        self.writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))

    async def head(self) -> tuple[int, dict[str, str]]:
        """Status and headers (names lower-cased) of the next response."""
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ", 2)[1]), headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks of a `Transfer-Encoding: chunked` body, as they arrive."""
        reader = self.reader
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our servers
                return
            chunk = await reader.readexactly(size + 2)
            yield chunk[:-2]

    async def body(self, headers: dict[str, str]) -> bytes:
        """The whole body of a response whose head was read."""
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return b"".join([chunk async for chunk in self.chunks()])
        return await self.reader.read()

    async def response(self) -> Response:
        status, headers = await self.head()
        return Response(status, headers, await self.body(headers))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a request and read its whole response."""
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        body = None if json_body is None else json.dumps(json_body).encode()
        self.send(method, path, body=body, headers=all_headers)
        return await self.response()

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes
    at: float  # perf_counter() when the chunk holding it was read


async def sse_events(conn: Connection) -> AsyncIterator[SSEEvent]:
    """Events of a chunked `text/event-stream` body; comments and bare fields are skipped."""
    buffer = b""
    async for chunk in conn.chunks():
        at = time.perf_counter()
        buffer += chunk
        while (end := buffer.find(b"\n\n")) >= 0:
            frame, buffer = buffer[:end], buffer[end + 2 :]
            event: str | None = None
            data: list[bytes] = []
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
            if data:
                yield SSEEvent(event, b"\n".join(data), at)


async def open_events(port: int, token: str) -> Connection:
    """A connection streaming the user's /api/events, past its headers."""
    conn = await Connection.open(port)
    conn.send("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
    status, headers = await conn.head()
    if status != 200 or "chunked" not in headers.get("transfer-encoding", ""):
        conn.close()
        raise RuntimeError(f"/api/events answered {status}")
    return conn


class Listener:
    """Reads one user's /api/events in a task; tells when each event of a message arrived.

    `wait(kind, message_id)` returns the arrival time of the first `kind` event of that
    message (`message.delta`, `message.created`, ...), or of its end for kind "end"
    (`message.completed` or `message.failed`; the type is in `ends`).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.counts: dict[str, int] = {}
        self.ends: dict[str, str] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, token: str) -> Listener:
        return cls(await open_events(port, token))

    async def _read(self) -> None:
        async for item in sse_events(self.conn):
            kind = item.event or "message"
            self.counts[kind] = self.counts.get(kind, 0) + 1
            message_id = json.loads(item.data).get("message_id")
            if not message_id:
                continue
            if kind in ("message.completed", "message.failed"):
                self.ends[message_id] = kind
                self._mark(("end", message_id), item.at)
            self._mark((kind, message_id), item.at)

    def _mark(self, key: tuple[str, str], at: float) -> None:
        if key in self._seen:
            return
        self._seen[key] = at
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)

    async def wait(self, kind: str, message_id: str, limit: float = REQUEST_SECONDS) -> float:
        """perf_counter() when the first `kind` event of `message_id` was read."""
        key = (kind, message_id)
        if key not in self._seen:
            if self._task.done():
                raise RuntimeError("the event stream ended")
            waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
            async with asyncio.timeout(limit):
                await waiter
        return self._seen.pop(key)

    async def completed(self, message_id: str) -> None:
        """Wait for the end of reply `message_id`; RuntimeError unless it completed."""
        await self.wait("end", message_id)
        if self.ends.get(message_id) != "message.completed":
            raise RuntimeError(f"reply {message_id} failed")

    def forget(self, message_id: str) -> None:
        """Drop what is remembered about a message (keeps long runs small)."""
        for key in [k for k in self._seen if k[1] == message_id]:
            del self._seen[key]
        self.ends.pop(message_id, None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.conn.close()


# -- users --------------------------------------------------------------------------------


@dataclass
class BenchUser:
    """A registered, signed-in user with one titled conversation on endpoint `fake`."""

    email: str
    token: str
    conversation_id: str
    # A first message: later messages answer it, so every request has the same short context.
    seed_message_id: str


def expect(response: Response, status: int, what: str) -> Any:
    if response.status != status:
        raise RuntimeError(f"{what}: {response.status} {response.body[:300]!r}")
    return response.json()


async def make_user(port: int, email: str) -> BenchUser:
    """Register, log in, create a titled conversation (no title call) and a seed message."""
    conn = await Connection.open(port)
    try:
        async with asyncio.timeout(REQUEST_SECONDS * 4):
            body = {"email": email, "password": PASSWORD, "name": email.split("@")[0]}
            expect(
                await conn.request("POST", "/api/auth/register", json_body=body), 201, "register"
            )
            body = {"email": email, "password": PASSWORD}
            token = expect(
                await conn.request("POST", "/api/auth/login", json_body=body), 200, "login"
            )["access_token"]
            body = {"endpoint": "fake", "title": "bench"}
            convo = expect(
                await conn.request("POST", "/api/convos", json_body=body, token=token),
                201,
                "create conversation",
            )
            path = f"/api/messages/{convo['conversation_id']}"
            seed_body = {"text": "seed", "respond": False}
            seed = expect(
                await conn.request("POST", path, json_body=seed_body, token=token), 201, "seed"
            )
    finally:
        # uvicorn closes keep-alive connections idle for 5 s: phases open their own.
        conn.close()
    return BenchUser(email, token, convo["conversation_id"], seed["message"]["message_id"])


async def make_users(port: int, count: int, *, concurrency: int = 8) -> list[BenchUser]:
    """`count` users with fresh emails (the login limit counts per address and email)."""
    tag = uuid.uuid4().hex[:8]
    return await bounded(
        (make_user(port, f"bench-{tag}-{i}@example.com") for i in range(count)), concurrency
    )


async def bounded(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Await `coros` with at most `limit` at a time, results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with semaphore:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def fake_directive(**fields: Any) -> str:
    """A first line that reconfigures the fake upstream for one request."""
    return "!fake " + json.dumps(fields, separators=(",", ":"))


# -- numbers ------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        rest = zip(row[1:], widths[1:], strict=True)
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in rest]
        lines.append("  " + "  ".join(parts))
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    """'met' or 'MISSED (x<ratio>)' for a value that should stay at or under target."""
    return "met" if value <= target else f"MISSED (x{value / target:.1f} the target)"


def run(
    main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> None:
    """asyncio.run on uvloop when it is installed (the server uses it too)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a uvicorn[standard] dependency
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))


# -- profiles (py-spy) --------------------------------------------------------------------


def py_spy_command() -> list[str] | None:
    """py-spy (a dev dependency), else through uvx; None when neither is found."""
    if found := shutil.which("py-spy") or shutil.which(
        "py-spy", path=str(Path(sys.executable).parent)
    ):
        return [found]
    if uvx := shutil.which("uvx"):
        return [uvx, "py-spy"]
    return None


@contextlib.asynccontextmanager
async def py_spy_record(pid: int, out: Path, *, rate: int = 100) -> AsyncIterator[bool]:
    """Sample `pid` with py-spy while the block runs (only the thread holding the GIL,
    without pausing it: --nonblocking), raw stacks written to `out` when it ends.

    Yields whether py-spy started; it is stopped with SIGINT, on which it writes its file.
    """
    command = py_spy_command()
    if command is None:
        print("  py-spy not found (a dev dependency: uv sync, or install uv for uvx)")
        yield False
        return
    spy = await asyncio.create_subprocess_exec(
        *command, "record", "--pid", str(pid), "--rate", str(rate), "--gil", "--threads",
        "--nonblocking", "--format", "raw", "--output", str(out), "--duration", "3600",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # attached
    try:
        yield spy.returncode is None
    finally:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)
        _, err = await spy.communicate()
        if spy.returncode not in (0, -signal.SIGINT, 128 + signal.SIGINT):
            print(f"  py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-400:]}")


def profile_shares(
    lines: Sequence[str], inclusive: Sequence[tuple[str, tuple[str, ...]]], *, top: int = 25
) -> str:
    """py-spy raw stacks ("thread;frame;...;frame count") as tables of sample shares: by
    top-level package of the innermost frame, by label (a sample counts for a label when any
    frame of its stack contains one of the label's substrings), and by innermost frame."""
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";")[1:], int(count)))
    total = sum(n for _, n in stacks)
    if not total:
        return "  (no samples)"
    package: dict[str, int] = {}
    labelled: dict[str, int] = {}
    own: dict[str, int] = {}
    for frames, n in stacks:
        leaf = frames[-1] if frames else "(no frame)"
        top_name = leaf.rpartition(" (")[2].split("/", 1)[0].split(".", 1)[0] or "(none)"
        package[top_name] = package.get(top_name, 0) + n
        name = leaf.rsplit(":", 1)[0] + ")" if leaf.endswith(")") and ":" in leaf else leaf
        own[name] = own.get(name, 0) + n
        for label, patterns in inclusive:
            if any(p in frame for frame in frames for p in patterns):
                labelled[label] = labelled.get(label, 0) + n

    def share(n: int) -> str:
        return f"{n / total:.1%}"

    by_count = sorted(package.items(), key=lambda item: -item[1])[:top]
    parts = [f"  {total} samples holding the GIL"]
    rows: list[list[object]] = [[k, share(v)] for k, v in by_count]
    parts.append(table(["package of the innermost frame", "samples"], rows))
    rows = [[label, share(labelled.get(label, 0))] for label, _ in inclusive]
    parts.append(table(["anywhere on the stack", "samples"], rows))
    by_count = sorted(own.items(), key=lambda item: -item[1])[:top]
    parts.append(table(["innermost frame", "samples"], [[k[:110], share(v)] for k, v in by_count]))
    return "\n\n".join(parts)


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, to print next to a measurement."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
