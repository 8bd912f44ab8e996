"""Run every benchmark, one after another, each in its own process (`make bench`).

Each prints its figures against a baseline measured in the same run, and records the rows
of issues 13's and 15's targets it measures (`bench.targets`). At the end every row is
printed with its target for every backend; the exit status is non-zero when a benchmark
could not run or a must-reach row was missed (or not measured by a benchmark that ran).

    uv run python -m bench.run_all [--quick] [--only ttft,token_cpu] [--skip-pg]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import targets
from bench.common import PG_URL, REDIS_URL

# (module, arguments, arguments with --quick, time limit in seconds)
BENCHES: list[tuple[str, list[str], list[str], int]] = [
    ("fanout", [], [], 120),
    ("redis_hop", [], ["--rounds", "900"], 120),
    # --quick: SQLite only (signing in 200 users, argon2 hashes, takes a minute per backend).
    # Signing up 201 users (argon2) takes minutes per backend on a loaded 2-core machine.
    ("ttft", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite"], 1800),
    # One key's /v1 calls: no users to sign up, so both backends even with --quick.
    ("openai_api", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite,pg"], 900),
    ("token_cpu", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite,pg"], 300),
    ("sse_idle", [], ["--quick"], 300),
    ("gateway", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite,pg"], 900),
    ("web_ui", [], ["--quick"], 600),
    # --quick: a tenth of the rows (100,000 audit rows), said so in the recorded row.
    ("stats", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite,pg"], 900),
    # --quick: a tenth of the messages (100,000), said so in the recorded row.
    ("search", ["--backends", "sqlite,pg"], ["--quick", "--backends", "sqlite,pg"], 2400),
]
NEEDS_REDIS = {"fanout", "redis_hop"}


def redis_reachable(url: str) -> bool:
    """Whether a PING answers within a few seconds."""
    from redis import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def command(module: str, args: argparse.Namespace, extra: list[str], redis_ok: bool) -> list[str]:
    cmd = [sys.executable, "-m", f"bench.{module}", *extra]
    if module == "fanout":
        cmd += ["--redis-url", args.redis_url] if redis_ok else ["--no-redis"]
    elif module == "redis_hop":
        cmd += ["--redis-url", args.redis_url]
    else:
        cmd += ["--pg-url", args.pg_url, "--redis-url", args.redis_url]
        if args.skip_pg:
            cmd = [c.replace("sqlite,pg", "sqlite") for c in cmd]
    return cmd


def backends_of(cmd: list[str]) -> set[str]:
    """The backends a benchmark command runs on (its `--backends`, else both)."""
    if "--backends" in cmd:
        return set(cmd[cmd.index("--backends") + 1].split(","))
    return {"sqlite", "pg"}


def run_bounded(cmd: list[str], limit: float) -> int | None:
    """Run `cmd` in its own process group; its exit code, or None when it ran over `limit`.

    Over time it gets SIGINT, so it stops the servers it started; if it does not end
    within 30 s, its whole process group (it and its servers, nothing else) is killed.
    """
    process = subprocess.Popen(cmd, start_new_session=True)
    try:
        return process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return None
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, ttft on SQLite only (~15 min)"
    )
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--skip-pg", action="store_true", help="SQLite + memory bus only")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    args = parser.parse_args()

    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = wanted - {name for name, *_ in BENCHES}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    redis_ok = redis_reachable(args.redis_url)
    outcomes: list[tuple[str, str, float]] = []
    results = Path(tempfile.mkdtemp(prefix="relaychat-bench-")) / "rows.jsonl"
    os.environ[targets.RESULTS_ENV] = str(results)
    runs: dict[str, set[str]] = {}
    for module, full, quick, limit in BENCHES:
        if wanted and module not in wanted:
            continue
        if module == "redis_hop" and not redis_ok:
            outcomes.append((module, f"skipped: Redis at {args.redis_url} unreachable", 0.0))
            continue
        cmd = command(module, args, quick if args.quick else full, redis_ok)
        print(f"\n##### bench.{module}   ({' '.join(cmd[1:])})", flush=True)
        started = time.monotonic()
        runs[module] = backends_of(cmd)
        code = run_bounded(cmd, limit)
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        if code is None:
            status = f"FAILED (over {limit} s)"
        outcomes.append((module, status, time.monotonic() - started))

    print("\n##### summary")
    for module, status, seconds in outcomes:
        print(f"  {module:<10} {status:<40} {seconds:6.1f} s")
    print("\n##### targets (issues 13 and 15)")
    rows, targets_met = targets.summary(results, runs)
    print(rows)
    ran = all(s == "ok" or s.startswith("skipped") for _, s, _ in outcomes)
    if not targets_met:
        print("\na must-reach target was missed or not measured")
    return 0 if ran and targets_met else 1


if __name__ == "__main__":
    sys.exit(main())
