"""Server memory per idle /api/events connection, against bare TCP connections.

For each count (1,000 and 5,000), a fresh server gets a warm-up batch of connections of
the kind measured, then the count more; its resident set (VmRSS) is read after each
settles. Per connection = RSS growth / count. Kinds:

- `tcp`: connected, nothing sent: the socket, uvicorn's protocol object and its parser,
  what any connection costs (the baseline);
- `sse`: `GET /api/events` of one user, its headers and `retry:` frame read, then idle.

    uv run python -m bench.sse_idle [--quick] [--counts 1000,5000] [--backends sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from pathlib import Path

from bench.common import (
    ALL_CPUS,
    Backend,
    Connection,
    Proc,
    add_common_args,
    backends,
    bounded,
    cores,
    extra_env,
    make_users,
    open_events,
    open_fds,
    pin,
    raise_fd_limit,
    relaychat_server,
    rss_kb,
    run,
    table,
    verdict,
    workspace,
)

TARGET_KB = 24.0
WARMUP = 200
OPEN_CONCURRENCY = 50
SETTLE_SECONDS = 2.0


async def settled_rss(pid: int, seconds: float = SETTLE_SECONDS) -> int:
    """The median of a few RSS reads after `seconds` of quiet."""
    await asyncio.sleep(seconds)
    reads = []
    for _ in range(5):
        reads.append(rss_kb(pid))
        await asyncio.sleep(0.1)
    return int(statistics.median(reads))


async def wait_for_fds(pid: int, at_least: int, limit: float = 30.0) -> None:
    """Until the server holds `at_least` open files: every connection was accepted."""
    at_least -= 5  # slack for connections of the setup still being closed
    deadline = time.monotonic() + limit
    while open_fds(pid) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"server holds {open_fds(pid)} files, expected {at_least}")
        await asyncio.sleep(0.1)


async def open_tcp(port: int) -> Connection:
    return await Connection.open(port)


async def measure(server: Proc, kind: str, count: int, token: str) -> tuple[int, int, int]:
    """(RSS before, RSS after, connections) with `count` idle connections of `kind` added."""

    async def one() -> Connection:
        if kind == "sse":
            conn = await open_events(server.port, token)
            # The `retry:` hint: the stream is live and its task is parked on the bus.
            size = int((await conn.reader.readuntil(b"\r\n"))[:-2], 16)
            await conn.reader.readexactly(size + 2)
            return conn
        return await open_tcp(server.port)

    conns: list[Connection] = []
    try:
        async with asyncio.timeout(120 + count / 50):
            fds = open_fds(server.pid)
            conns += await bounded((one() for _ in range(WARMUP)), OPEN_CONCURRENCY)
            await wait_for_fds(server.pid, fds + WARMUP)
            before = await settled_rss(server.pid)
            fds = open_fds(server.pid)
            conns += await bounded((one() for _ in range(count)), OPEN_CONCURRENCY)
            await wait_for_fds(server.pid, fds + count)
            after = await settled_rss(server.pid)
            return before, after, len(conns) - WARMUP
    finally:
        for conn in conns:
            conn.close()


async def bench_backend(
    backend: Backend, args: argparse.Namespace, counts: list[int], workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, client on {load_cpus}")
    results: dict[tuple[str, int], float] = {}
    rows = []
    for count in counts:
        for kind in ("tcp", "sse"):
            gc.collect()
            # Nothing listens on port 1: the server only needs a configured endpoint.
            async with relaychat_server(
                backend, workdir, fake_port=1, env=extra_env(args)
            ) as server:
                token = (await make_users(server.port, 1))[0].token
                pin(server.pid, server_cpus)
                pin(0, load_cpus)
                try:
                    before, after, opened = await measure(server, kind, count, token)
                finally:
                    pin(0, ALL_CPUS)
            per_kb = (after - before) / opened
            results[kind, count] = per_kb
            rows.append(
                [kind, opened, f"{before / 1024:.1f}", f"{after / 1024:.1f}", f"{per_kb:.1f}"]
            )
    print(table(["kind", "connections", "RSS before MiB", "RSS after MiB", "KiB/conn"], rows))
    for count in counts:
        sse, tcp = results["sse", count], results["tcp", count]
        print(
            f"  {count} idle /api/events: {sse:.1f} KiB each (x{sse / tcp:.1f} a bare TCP "
            f"connection's {tcp:.1f} KiB; the stream adds {sse - tcp:.1f} KiB)   "
            f"target <= {TARGET_KB:g} kB ({TARGET_KB / 1.024:.1f} KiB): "
            f"{verdict(sse * 1.024, TARGET_KB)}"
        )


async def main(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.counts.split(",")] if args.counts else [1000, 5000]
    if args.quick and not args.counts:
        counts = [1000]
    limit = raise_fd_limit(max(counts) + WARMUP + 1000)
    if limit < max(counts) + WARMUP + 200:
        raise SystemExit(f"open-file limit {limit} is too low for {max(counts)} connections")
    with workspace("sse-idle") as workdir:
        async with backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, counts, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite")
    parser.add_argument("--counts", default="", help="connection counts (default 1000,5000)")
    run(main, parser.parse_args())
