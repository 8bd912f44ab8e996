"""Server CPU per relayed token, against the CPU of the same requests without a reply.

A few users, each with its event stream open, post messages one after another. With
`respond: false` (the baseline) the server stores each message and sends
`message.created`; otherwise it also streams a reply of N tokens from the fake upstream
(5 ms apart) to the user's event stream. The server's CPU time (user + system, all its
threads, from /proc) is read around each phase; phases alternate.

    per token = (CPU of the replying phase - CPU of the baseline phase) / tokens relayed

The same with 20-token replies gives the marginal cost of one more token, without the
fixed cost of starting and finishing a generation.

    uv run python -m bench.token_cpu [--quick] [--backends sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    ALL_CPUS,
    REQUEST_SECONDS,
    Backend,
    BenchUser,
    Connection,
    Listener,
    add_common_args,
    backends,
    bounded,
    cores,
    cpu_seconds,
    expect,
    extra_env,
    fake_directive,
    fake_upstream,
    make_users,
    pin,
    relaychat_server,
    run,
    table,
    verdict,
    workspace,
)

TARGET_US_PER_TOKEN = 30.0
TOKEN_DELAY_MS = 5
USERS = 10
LONG, SHORT = 100, 20


@dataclass
class Phase:
    name: str
    tokens_per_reply: int  # 0: the baseline, no reply
    requests: int = 0
    tokens: int = 0
    cpu: float = 0.0
    wall: float = 0.0


def prompt(tokens: int) -> str:
    reply = " ".join(f"tok{i}" for i in range(tokens or 1))
    return fake_directive(reply=reply, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"


async def user_posts(
    port: int, user: BenchUser, listener: Listener, phase: Phase, messages: int
) -> None:
    """`messages` posts, each waited for: its reply's end, or its own message.created."""
    conn = await Connection.open(port)
    path = f"/api/messages/{user.conversation_id}"
    body = {
        "text": prompt(phase.tokens_per_reply),
        "parent_message_id": user.seed_message_id,
        "respond": phase.tokens_per_reply > 0,
    }
    try:
        for _ in range(messages):
            async with asyncio.timeout(REQUEST_SECONDS):
                response = await conn.request("POST", path, json_body=body, token=user.token)
            if phase.tokens_per_reply:
                message_id = expect(response, 202, "post")["response_message_id"]
                await listener.completed(message_id)
            else:
                message_id = expect(response, 201, "post")["message"]["message_id"]
                await listener.wait("message.created", message_id)
            listener.forget(message_id)
            phase.requests += 1
    finally:
        conn.close()


async def run_phase(
    pid: int,
    port: int,
    users: list[BenchUser],
    listeners: list[Listener],
    phase: Phase,
    messages: int,
) -> None:
    gc.collect()
    deltas = sum(listener.counts.get("message.delta", 0) for listener in listeners)
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    pairs = zip(users, listeners, strict=True)
    await asyncio.gather(*(user_posts(port, u, lst, phase, messages) for u, lst in pairs))
    await asyncio.sleep(0.2)  # let the runner finish its bookkeeping
    phase.cpu += cpu_seconds(pid) - cpu
    phase.wall += time.perf_counter() - wall - 0.2
    phase.tokens += sum(lst.counts.get("message.delta", 0) for lst in listeners) - deltas


async def bench_backend(
    backend: Backend, args: argparse.Namespace, fake_port: int, workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, fake + client on {load_cpus}")
    async with relaychat_server(
        backend, workdir, fake_port=fake_port, env=extra_env(args)
    ) as server:
        users = await make_users(server.port, USERS)
        pin(server.pid, server_cpus)
        pin(0, load_cpus)
        listeners = await bounded((Listener.open(server.port, u.token) for u in users), 16)
        phases = [
            Phase("baseline: respond false", 0),
            Phase(f"replies of {SHORT} tokens", SHORT),
            Phase(f"replies of {LONG} tokens", LONG),
        ]
        repeats, messages = (1, 5) if args.quick else (3, 8)
        try:
            # Warm-up: imports, pools and caches filled on first use.
            for phase in (Phase("warm-up", 0), Phase("warm-up", SHORT)):
                await run_phase(server.pid, server.port, users, listeners, phase, 2)
            for _ in range(repeats):
                for phase in phases:
                    await run_phase(server.pid, server.port, users, listeners, phase, messages)
        finally:
            for listener in listeners:
                await listener.close()
            pin(0, ALL_CPUS)
    report(phases)


def report(phases: list[Phase]) -> None:
    base, short, long_ = phases
    base_per_request = base.cpu / base.requests
    rows = []
    for phase in phases:
        per_token = (
            f"{(phase.cpu - base_per_request * phase.requests) / phase.tokens * 1e6:.1f}"
            if phase.tokens
            else "-"
        )
        rows.append(
            [
                phase.name,
                phase.requests,
                phase.tokens,
                f"{phase.wall:.1f}",
                f"{phase.cpu:.2f}",
                f"{phase.cpu / phase.requests * 1e3:.2f}",
                f"x{phase.cpu / phase.requests / base_per_request:.1f}",
                per_token,
            ]
        )
    headers = ["phase", "requests", "tokens", "wall s", "CPU s", "CPU/req ms", "vs base"]
    print(table([*headers, "us/token"], rows))
    all_in = (long_.cpu - base_per_request * long_.requests) / long_.tokens * 1e6
    marginal = (long_.cpu / long_.requests - short.cpu / short.requests) / (LONG - SHORT) * 1e6
    print(
        f"  server CPU per relayed token ({LONG}-token replies, baseline requests subtracted): "
        f"{all_in:.1f} us   target <= {TARGET_US_PER_TOKEN:g} us: "
        f"{verdict(all_in, TARGET_US_PER_TOKEN)}"
    )
    print(
        f"  marginal CPU per token ({LONG} vs {SHORT}-token replies): {marginal:.1f} us; "
        f"fixed cost of a generation: "
        f"{(short.cpu / short.requests - base_per_request) * 1e3 - marginal * SHORT / 1e3:.2f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    with workspace("token-cpu") as workdir:
        _, load_cpus = cores()
        async with fake_upstream(workdir, cpus=load_cpus) as fake, backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, fake.port, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite")
    run(main, parser.parse_args())
