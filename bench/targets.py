"""The performance targets (issue 13's table; issue 15's /v1 rows) and the record each
benchmark leaves of them.

A benchmark measures a row with `record(key, backend, value)`: it gets back "met" or
"MISSED ..." to print next to its own figures, and, when `make bench` runs it
(`BENCH_RESULTS` names a file), the value is appended there as one JSON line. `run_all`
then prints every row of `TARGETS` for every backend, with what was measured, and fails
when a must-reach row was missed or not measured.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RESULTS_ENV = "BENCH_RESULTS"


@dataclass(frozen=True, slots=True)
class Target:
    """One row: what is measured, in which unit, what must be reached and what is hoped for."""

    key: str
    title: str
    unit: str
    must: float
    goal: float
    # "higher": the value must be at least `must`; "lower": at most.
    better: Literal["higher", "lower"]
    # The benchmark that measures it (`bench.<module>`), so a missing row says where to look.
    module: str
    # Backends it is measured on; an adapter's CPU does not depend on the database.
    backends: tuple[str, ...] = ("sqlite", "pg")
    # A published figure of another system to print beside the row (not a target).
    beside: str = ""

    def met(self, value: float, level: float | None = None) -> bool:
        bound = self.must if level is None else level
        return value >= bound if self.better == "higher" else value <= bound

    def verdict(self, value: float) -> str:
        sign = ">=" if self.better == "higher" else "<="
        wanted = f"must {sign} {fmt(self.must, self.unit)}, goal {fmt(self.goal, self.unit)}"
        if not self.met(value):
            return f"MISSED ({wanted})"
        return f"met ({wanted})" if not self.met(value, self.goal) else f"goal met ({wanted})"


def fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


_ROWS = [
    Target("gateway.share", "inject-only external message, share of bare FastAPI req/s, "
           "64 connections", "%", 40.0, 60.0, "higher", "gateway"),
    Target("gateway.p99", "inject-only external message, p99 latency, 64 connections",
           "ms", 50.0, 20.0, "lower", "gateway"),
    Target("gateway.reply_share", "external message with a reply (fake upstream, 20 tokens), "
           "share of bare", "%", 15.0, 25.0, "higher", "gateway"),
    Target("tokens.openai", "CPU per relayed token, OpenAI adapter", "us", 40.0, 30.0,
           "lower", "token_cpu"),
    Target("tokens.anthropic", "CPU per relayed token, Anthropic adapter", "us", 40.0, 30.0,
           "lower", "token_cpu"),
    Target("tokens.google", "CPU per relayed token, Google adapter", "us", 60.0, 40.0,
           "lower", "token_cpu"),
    Target("generation.fixed", "fixed CPU per generation (start + finish)", "ms", 2.0, 1.0,
           "lower", "token_cpu"),
    Target("ttft.burst_p50", "200 replies started in the same instant, added TTFT p50", "ms",
           250.0, 100.0, "lower", "ttft"),
    Target("ttft.burst_p99", "200 replies started in the same instant, added TTFT p99", "ms",
           500.0, 200.0, "lower", "ttft"),
    Target("ttft.busy_p50", "a new message while 200 replies stream, added TTFT p50", "ms",
           25.0, 10.0, "lower", "ttft"),
    Target("ttft.busy_p99", "a new message while 200 replies stream, added TTFT p99", "ms",
           60.0, 30.0, "lower", "ttft"),
    Target("ttft.one_p50", "one reply, added TTFT p50", "ms", 2.0, 1.0, "lower", "ttft"),
    Target("v1.one_p50", "/v1/chat/completions, one stream, added TTFT p50", "ms", 2.0, 1.0,
           "lower", "openai_api", beside="LiteLLM's published median overhead: 3.25 ms"),
    Target("v1.concurrent_p50", "/v1/chat/completions, a stream while 200 stream, added TTFT "
           "p50", "ms", 25.0, 10.0, "lower", "openai_api",
           beside="LiteLLM's published median overhead: 3.25 ms"),
    Target("stats.week_p95", "stats 7d of 1M audit rows (and 100k replies), admin, p95", "ms",
           200.0, 100.0, "lower", "stats"),
    Target("search.p95", "search over 1M messages (100 users, 10k conversations), "
           "a person's query, p95", "ms", 50.0, 25.0, "lower", "search"),
    Target("search.ingest_share", "message ingest with the search index, share of without",
           "%", 80.0, 90.0, "higher", "search"),
]  # fmt: skip
TARGETS: dict[str, Target] = {t.key: t for t in _ROWS}


def record(key: str, backend: str, value: float, detail: str = "") -> str:
    """Keep `value` as the measure of row `key` on `backend`; its verdict, to print."""
    target = TARGETS[key]
    path = os.environ.get(RESULTS_ENV)
    if path:
        line = {"key": key, "backend": backend, "value": value, "detail": detail}
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    return target.verdict(value)


def load(path: Path) -> dict[tuple[str, str], tuple[float, str]]:
    """The recorded rows, by (key, backend); a row measured twice keeps its last value."""
    rows: dict[tuple[str, str], tuple[float, str]] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row["key"], row["backend"])] = (float(row["value"]), str(row["detail"]))
    return rows


def summary(path: Path, runs: dict[str, set[str]]) -> tuple[str, bool]:
    """Every row, per backend, and whether every must-reach row that was run held.

    `runs` maps each benchmark that ran to the backends it ran on; a row of a backend it
    did not run on is listed as not run, and one it ran on but did not record is a miss.
    """
    lines = []
    ok = True
    measured = load(path)
    for target in _ROWS:
        lines.append(f"  {target.title}")
        for backend in target.backends:
            if backend not in runs.get(target.module, set()):
                lines.append(f"    {backend:<7} {'not run':>14}")
                continue
            found = measured.get((target.key, backend))
            if found is None:
                ok = False
                lines.append(f"    {backend:<7} not measured   MISSED (bench.{target.module})")
                continue
            value, detail = found
            ok = ok and target.met(value)
            extra = f"   [{detail}]" if detail else ""
            extra += f"   (beside: {target.beside})" if target.beside else ""
            lines.append(
                f"    {backend:<7} {fmt(value, target.unit):>14}   {target.verdict(value)}{extra}"
            )
    return "\n".join(lines), ok
