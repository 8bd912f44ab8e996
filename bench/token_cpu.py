"""Server CPU per relayed token, per adapter (OpenAI, Anthropic, Google), and per generation.

A few users, each with its event stream open, post messages one after another. With
`respond: false` (the baseline) the server stores each message and sends
`message.created`; otherwise it also streams a reply of N tokens from the fake upstream
(5 ms apart) to the user's event stream. Each user has one conversation per adapter: the
server's `openAI`, `anthropic` and `google` endpoints all point at `relaychat dev
fake-llm`, which speaks each provider's wire format, so each reply goes through that
provider's official SDK and relaychat's reader of its stream. The server's CPU time
(user + system, all its threads, from /proc) is read around each phase; phases alternate.

    per token (marginal) = (CPU per 200-token reply - CPU per 20-token reply) / 180
    fixed per generation = CPU per 20-token reply - CPU per baseline request
                           - 20 x per token

A token is one chunk of the upstream's stream (one word of the fake's reply); the
`message.delta` events counted on the listeners may be fewer when deltas are coalesced.
Rows recorded (`bench.targets`): tokens.openai, tokens.anthropic, tokens.google, and
generation.fixed (the mean of the three adapters' fixed costs, each printed). An estimate
at or below zero (the phases' noise exceeds the difference) is printed but not recorded,
so `make bench` reports the row as not measured rather than met.

    uv run python -m bench.token_cpu [--quick] [--backends sqlite,pg] [--profile ADAPTER]
                                     [--profile-tokens N]

`--profile openai` also samples the server with py-spy (`py-spy record --gil`) during one
more phase of 200-token replies of that adapter (`--profile-tokens N`: of N tokens) and
prints where the samples fell.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
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
    pin,
    relaychat_server,
    run,
    table,
    workspace,
)
from tests.support.live import HOST

TOKEN_DELAY_MS = 5
USERS = 10
# The per-token estimate is the difference of two phases' CPU: the longer the gap between
# them, the less the noise of a phase (timers, the heartbeat, the WAL checkpointer) weighs.
LONG, SHORT = 200, 20
# Adapter (the row of bench.targets) -> the server's endpoint for it, and the fake's base URL
# path its SDK wants.
ADAPTERS: dict[str, tuple[str, str]] = {
    "openai": ("openAI", "/v1"),
    "anthropic": ("anthropic", ""),
    "google": ("google", ""),
}
PROFILE_HZ = 200


@dataclass
class Phase:
    name: str
    adapter: str | None  # None: the baseline, no reply
    tokens_per_reply: int
    requests: int = 0
    deltas: int = 0
    cpu: float = 0.0
    wall: float = 0.0

    @property
    def tokens(self) -> int:
        return self.requests * self.tokens_per_reply

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.requests


@dataclass
class Seat:
    """One user: the listener of its event stream and a conversation per adapter."""

    user: BenchUser
    listener: Listener
    # adapter -> (conversation id, seed message id); None: the user's own (`fake`) one.
    conversations: dict[str | None, tuple[str, str]] = field(default_factory=dict)


def write_config(path: Path, fake_port: int) -> None:
    """The fake as endpoint `fake` (custom, for `make_users`) and as each built-in provider."""
    url = f"http://{HOST}:{fake_port}"
    models = "models: {default: [fake-model], fetch: false}"
    builtins = "".join(
        f"  {endpoint}:\n    base_url: {url}{path}\n    api_key: fake-key\n    {models}\n"
        for endpoint, path in ADAPTERS.values()
    )
    path.write_text(
        f"endpoints:\n{builtins}  custom:\n    - name: fake\n      base_url: {url}/v1\n"
        f"      api_key: fake-key\n      {models}\n"
    )


def prompt(tokens: int) -> str:
    reply = " ".join(f"tok{i}" for i in range(tokens or 1))
    return fake_directive(reply=reply, token_delay_ms=TOKEN_DELAY_MS) + "\nHello"


async def add_conversations(port: int, seat: Seat) -> None:
    """A titled conversation with a seed message on each adapter's endpoint."""
    seat.conversations[None] = (seat.user.conversation_id, seat.user.seed_message_id)
    conn = await Connection.open(port)
    token = seat.user.token
    try:
        for adapter, (endpoint, _) in ADAPTERS.items():
            body = {"endpoint": endpoint, "model": "fake-model", "title": "bench"}
            convo = expect(
                await conn.request("POST", "/api/convos", json_body=body, token=token),
                201,
                "create conversation",
            )
            path = f"/api/messages/{convo['conversation_id']}"
            seed = expect(
                await conn.request(
                    "POST", path, json_body={"text": "seed", "respond": False}, token=token
                ),
                201,
                "seed",
            )
            seat.conversations[adapter] = (convo["conversation_id"], seed["message"]["message_id"])
    finally:
        conn.close()


async def user_posts(port: int, seat: Seat, phase: Phase, messages: int) -> None:
    """`messages` posts, each waited for: its reply's end, or its own message.created.

    Each on a connection of its own: on a loaded machine a reply can outlast uvicorn's
    keep-alive timeout (5 s), which would close a connection kept between posts.
    """
    conversation_id, seed_id = seat.conversations[phase.adapter]
    path = f"/api/messages/{conversation_id}"
    body = {
        "text": prompt(phase.tokens_per_reply),
        "parent_message_id": seed_id,
        "respond": phase.tokens_per_reply > 0,
    }
    listener = seat.listener
    for _ in range(messages):
        conn = await Connection.open(port)
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                response = await conn.request("POST", path, json_body=body, token=seat.user.token)
        finally:
            conn.close()
        if phase.tokens_per_reply:
            message_id = expect(response, 202, "post")["response_message_id"]
            await listener.completed(message_id)
        else:
            message_id = expect(response, 201, "post")["message"]["message_id"]
            await listener.wait("message.created", message_id)
        listener.forget(message_id)
        phase.requests += 1


async def run_phase(pid: int, port: int, seats: list[Seat], phase: Phase, messages: int) -> None:
    gc.collect()
    deltas = sum(seat.listener.counts.get("message.delta", 0) for seat in seats)
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(user_posts(port, seat, phase, messages) for seat in seats))
    await asyncio.sleep(0.2)  # let the runner finish its bookkeeping
    phase.cpu += cpu_seconds(pid) - cpu
    phase.wall += time.perf_counter() - wall - 0.2
    phase.deltas += sum(s.listener.counts.get("message.delta", 0) for s in seats) - deltas


async def bench_backend(
    backend: Backend, args: argparse.Namespace, fake_port: int, workdir: Path
) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, fake + client on {load_cpus}")
    config = workdir / f"token-cpu-{backend.key}.yaml"
    write_config(config, fake_port)
    env = {"RELAYCHAT_CONFIG": str(config), **extra_env(args)}
    async with relaychat_server(backend, workdir, fake_port=fake_port, env=env) as server:
        users = await make_users(server.port, USERS)
        listeners = await bounded((Listener.open(server.port, u.token) for u in users), 16)
        seats = [Seat(u, lst) for u, lst in zip(users, listeners, strict=True)]
        await bounded((add_conversations(server.port, seat) for seat in seats), 8)
        pin(server.pid, server_cpus)
        pin(0, load_cpus)
        base = Phase("baseline: respond false", None, 0)
        phases: dict[str, tuple[Phase, Phase]] = {
            adapter: (
                Phase(f"{adapter}: replies of {SHORT} tokens", adapter, SHORT),
                Phase(f"{adapter}: replies of {LONG} tokens", adapter, LONG),
            )
            for adapter in ADAPTERS
        }
        # Sized for `make bench`'s limit (300 s, both backends) on a loaded 2-core machine.
        repeats, messages = (1, 4) if args.quick else (2, 6)
        try:
            # Warm-up: imports, pools and caches filled on first use, every adapter.
            await run_phase(server.pid, server.port, seats, Phase("warm-up", None, 0), 2)
            for adapter in ADAPTERS:
                warm = Phase("warm-up", adapter, SHORT)
                await run_phase(server.pid, server.port, seats, warm, 2)
            for _ in range(repeats):
                await run_phase(server.pid, server.port, seats, base, messages)
                for short, long_ in phases.values():
                    await run_phase(server.pid, server.port, seats, short, messages)
                    await run_phase(server.pid, server.port, seats, long_, messages)
            if args.profile:
                await profile(
                    server.pid, server.port, seats, args.profile, args.profile_tokens, workdir,
                    backend.key,
                )  # fmt: skip
        finally:
            for seat in seats:
                await seat.listener.close()
            pin(0, ALL_CPUS)
        error = first_error(server)
        if error:
            print(f"  relaychat logged errors; the first:\n{error}")
    report(backend, base, phases)


def report(backend: Backend, base: Phase, phases: dict[str, tuple[Phase, Phase]]) -> None:
    base_per_request = base.cpu_per_request
    rows = [[base.name, base.requests, "-", "-", f"{base.wall:.1f}", f"{base.cpu:.2f}",
             f"{base_per_request * 1e3:.2f}"]]  # fmt: skip
    for short, long_ in phases.values():
        for phase in (short, long_):
            rows.append(
                [
                    phase.name,
                    phase.requests,
                    phase.tokens,
                    phase.deltas,
                    f"{phase.wall:.1f}",
                    f"{phase.cpu:.2f}",
                    f"{phase.cpu_per_request * 1e3:.2f}",
                ]
            )
    headers = ["phase", "requests", "tokens", "deltas", "wall s", "CPU s", "CPU/req ms"]
    print(table(headers, rows))
    fixed: list[float] = []
    for adapter, (short, long_) in phases.items():
        per_token = (long_.cpu_per_request - short.cpu_per_request) / (LONG - SHORT)
        generation = short.cpu_per_request - base_per_request - per_token * SHORT
        fixed.append(generation)
        all_in = (long_.cpu_per_request - base_per_request) / LONG
        verdict = (
            targets.record(
                f"tokens.{adapter}", backend.key, per_token * 1e6, f"all-in {all_in * 1e6:.0f} us"
            )
            if per_token > 0
            # Noise larger than the signal: no value is better than a "met" from it.
            else "NOT RECORDED: the phases' noise exceeds the difference; run again"
        )
        print(
            f"  {adapter:<9} CPU per relayed token {per_token * 1e6:6.1f} us  {verdict}\n"
            f"            (all in, {LONG}-token replies less the baseline: "
            f"{all_in * 1e6:.1f} us); fixed per generation {generation * 1e3:.2f} ms"
        )
    mean = sum(fixed) / len(fixed)
    detail = ", ".join(f"{a} {f * 1e3:.2f}" for a, f in zip(ADAPTERS, fixed, strict=True))
    verdict = (
        targets.record("generation.fixed", backend.key, mean * 1e3, detail + " ms")
        if min(fixed) > 0
        else "NOT RECORDED: an adapter's estimate is negative (noise); run again"
    )
    print(f"  fixed CPU per generation (mean of the adapters): {mean * 1e3:.2f} ms  {verdict}")


# -- profile (py-spy) ---------------------------------------------------------------------

# (label, substrings of frames): a sample counts when any frame of its stack has one.
INCLUSIVE: list[tuple[str, tuple[str, ...]]] = [
    ("adapter stream (llm/)", ("(relaychat/llm/",)),
    ("  vendor SDKs", ("(openai/", "(anthropic/", "(google/genai/")),
    ("  HTTP client (httpx2, httpcore2, aiohttp)", ("(httpx2/", "(httpcore", "(aiohttp/")),
    ("generation runner (domain/answering/)", ("(relaychat/domain/answering/",)),
    ("bus publish + SSE (realtime/)", ("(relaychat/realtime/",)),
    ("message posts (api/, domain/messaging)", ("(relaychat/api/", "(relaychat/domain/messag")),
    ("SQLAlchemy", ("(sqlalchemy/",)),
    ("DB driver (aiosqlite / asyncpg)", ("(aiosqlite/", "(asyncpg/")),
    ("Redis client", ("(redis/",)),
    ("pydantic (Python side)", ("(pydantic/",)),
    ("uvicorn / starlette / fastapi", ("(uvicorn/", "(starlette/", "(fastapi/")),
]


async def profile(
    pid: int, port: int, seats: list[Seat], adapter: str, tokens: int, workdir: Path, tag: str
) -> None:
    """py-spy on the server during a phase of `tokens`-token replies of `adapter`.

    Prints the shares. Long replies show the per-token path; replies of a token or two
    show the fixed cost of a generation.
    """
    # The venv's own (a dev dependency), else one on PATH.
    beside = Path(sys.executable).with_name("py-spy")
    spy_path = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy_path is None:
        print("  --profile: py-spy not found (it is a dev dependency: uv sync)")
        return
    out = workdir / f"profile-{adapter}-{tag}.txt"
    spy = await asyncio.create_subprocess_exec(
        spy_path, "record", "--pid", str(pid), "--rate", str(PROFILE_HZ), "--gil",
        "--nonblocking", "--format", "raw", "--output", str(out),
        stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # attached
    phase = Phase(f"profile {adapter}", adapter, tokens)
    await run_phase(pid, port, seats, phase, 4 if tokens >= SHORT else 16)
    spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
    _, err = await spy.communicate()
    if not out.exists():
        print(f"  py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-400:]}")
        return
    kept = Path.cwd() / f"token-cpu-profile-{adapter}-{tag}.txt"
    shutil.copy(out, kept)
    print(
        f"\n  py-spy --gil at {PROFILE_HZ} Hz, {phase.requests} replies of {tokens} tokens "
        f"({phase.cpu_per_request * 1e3:.1f} ms CPU each); stacks kept in {kept.name}"
    )
    print_profile(out.read_text().splitlines())


def print_profile(lines: list[str]) -> None:
    """Shares of the samples: inclusive by area, and the innermost frames."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[re.sub(r":\d+\)$", ")", frames[-1])] += n
        for label, patterns in INCLUSIVE:
            if any(p in frame for frame in frames for p in patterns):
                inclusive[label] += n
    if not total:
        print("  (no samples)")
        return
    rows = [[label, f"{inclusive[label] / total:.1%}"] for label, _ in INCLUSIVE]
    print(table(["anywhere on the stack", "samples"], rows))
    rows = [[name[:110], f"{n / total:.1%}"] for name, n in own.most_common(25)]
    print(table(["innermost frame", "samples"], rows))


async def main(args: argparse.Namespace) -> None:
    if args.profile and args.profile not in ADAPTERS:
        raise SystemExit(f"--profile wants one of {', '.join(ADAPTERS)}")
    with workspace("token-cpu") as workdir:
        _, load_cpus = cores()
        async with fake_upstream(workdir, cpus=load_cpus) as fake, backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, fake.port, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite")
    parser.add_argument(
        "--profile", metavar="ADAPTER", help="also sample the server with py-spy (openai, ...)"
    )
    parser.add_argument(
        "--profile-tokens",
        type=int,
        default=LONG,
        metavar="N",
        help=f"tokens per reply in the profiled phase (default {LONG}; 1 shows the fixed cost)",
    )
    run(main, parser.parse_args())
