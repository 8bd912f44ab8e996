"""`GET /api/stats?window=7d` over a week of a million audit rows, against a bare count of
the same rows.

A fresh server on each backend; then a week of traffic is written straight into its
database by the database itself (one INSERT ... SELECT per table): 1,000,000 audit rows
(92 % accepted, 1 % replayed, 4 % refused for four reasons, 3 % rate-limited, latencies
log-normal around 4 ms) in time order over the last seven days across ten key owners, and
100,000 replies (a generation, its message and its token usage each: 90 % completed, 5 %
failed, 3 % aborted, 2 % interrupted, first tokens log-normal around 300 ms) in the
conversations of two users. `--quick` writes a tenth of that (100,000 audit rows, 10,000
replies) and says so in the recorded row. As the rows bypass the writers, their hourly
counts (`audit_hours`, which the writers keep in the rows' transaction) are then filled by
the migration's own back-fill statement (storage/audit_hours.py `back_fill_sql`). After an ANALYZE
(PostgreSQL: VACUUM ANALYZE, as autovacuum keeps a live table), relaychat (pinned to the
last core) answers:

- an admin: `scope: all`, every row;
- a person who owns one key in ten (about 100,000 audit rows, 10,000 replies): `own`.

The first answer of each is timed apart: the server keeps nothing yet, so it counts every
bucket; so are `--firsts` more first answers, each at a bucket size of its own (3660 s,
3720 s, ...: nothing of those is kept either), as one sample says little on a busy
machine (those sizes are not whole hours: counted from the rows, not the hourly counts).
The answers after it, as a dashboard's polls, read only the buckets that are not
over (domain/stats/settled.py). Each is asked in turn with the baseline, `SELECT count(*)`
of the audit rows the answer covers, run by this process on its own connection: what one
walk of those rows costs, without HTTP. Reported: the first answer, the p50 of the other
first answers, p50 and p95 of the polls and of the baseline, and the ratio of the p50s. Target
(`bench.targets`, `stats.week_p95`): the admin's p95 within 200 ms.

    uv run python -m bench.stats [--quick] [--backends sqlite,pg] [--rows 1000000] [--firsts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Float, Integer, String, bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeEngine

from bench import targets
from bench.common import (
    ALL_CPUS,
    Backend,
    BenchUser,
    Connection,
    add_common_args,
    backends,
    cores,
    expect,
    extra_env,
    first_error,
    load_average,
    make_user,
    percentile,
    pin,
    relaychat_server,
    run,
    table,
    workspace,
)
from relaychat.storage.audit_hours import back_fill_sql
from relaychat.storage.db import create_engine
from relaychat.storage.models import AuditEvent, AuditHour

WEEK = timedelta(days=7)
OWNERS = 10
CHUNK = 50_000
REASONS = ("conversation_not_found", "permission_denied", "invalid_api_key", "api_key_required")


# The week is written by the database itself, from a few parameters: a million rows
# built here and sent through SQLAlchemy took many minutes on a loaded machine. Rows come
# in time order (as the audit writes them), one statement per table; the shares and
# shapes are the module docstring's. `u1`, `u2`: uniform draws for a log-normal value.
_DRAWS = {
    "sqlite": """
WITH RECURSIVE n(i) AS (SELECT :offset UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :stop),
draws AS MATERIALIZED (  -- else each use of a column would draw again
  SELECT i, (abs(random()) % 1000000) / 1000000.0 AS roll,
         (abs(random()) % 1000000) / 1000000.0 AS pick,
         (abs(random()) % 1000000) / 1000000.0 AS who,
         (abs(random()) % 1000000 + 1) / 1000001.0 AS u1,
         (abs(random()) % 1000000) / 1000000.0 AS u2
  FROM n)""",
    "postgresql": """
WITH draws AS (
  SELECT i, random() AS roll, random() AS pick, random() AS who, 1 - random() AS u1,
         random() AS u2
  FROM generate_series(:offset, :stop - 1) AS i)""",
}
_ID = {"sqlite": "printf('{0}%035d', i)", "postgresql": "'{0}' || lpad(i::text, 35, '0')"}
_TIME = {
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', {0}, 'unixepoch') || '000'",
    "postgresql": "to_timestamp({0})",
}
# Element `floor(draw * size)` of the JSON list in parameter `name`.
_PICK = {
    "sqlite": "json_extract(:{name}, '$[' || CAST({draw} * {size} AS INTEGER) || ']')",
    "postgresql": "(CAST(:{name} AS jsonb) ->> CAST(floor({draw} * {size}) AS integer))",
}
_JSON = {"sqlite": "'{0}'", "postgresql": "CAST('{0}' AS jsonb)"}
_NORMAL = "sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)"

_AUDIT = """{draws},
rows AS (
  SELECT i, who, u1, u2,
         CASE WHEN roll < 0.92 THEN 'accepted' WHEN roll < 0.93 THEN 'replayed'
              ELSE 'refused' END AS outcome,
         CASE WHEN roll < 0.93 THEN NULL WHEN roll >= 0.97 THEN 'rate_limited'
              ELSE {reason} END AS reason
  FROM draws)
INSERT INTO audit_events (id, created_at, api_key_id, key_owner_id, client_address, method,
                          path, outcome, reason, status, latency_ms)
SELECT {id}, {time},
       CASE WHEN reason IN ('invalid_api_key', 'api_key_required') THEN NULL
            ELSE 'key-' || {owner} END,
       CASE WHEN reason IN ('invalid_api_key', 'api_key_required') THEN NULL
            ELSE {owner} END,
       '203.0.113.9', 'POST', '/api/messages/c', outcome, reason,
       CASE WHEN outcome != 'refused' THEN 201 WHEN reason = 'rate_limited' THEN 429
            ELSE 403 END,
       exp(ln(4.0) + 0.6 * {normal})
FROM rows"""

# Two statements write a reply's message and its generation, so their draws are a fixed
# function of the row's number (multiplicative hashes modulo a prime), the same in both.
_FIXED_DRAWS = {
    "sqlite": "WITH RECURSIVE n(i) AS "
    "(SELECT :offset UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :stop)",
    "postgresql": "WITH n AS (SELECT i FROM generate_series(:offset, :stop - 1) AS i)",
}
_HASHED = "(((CAST(i AS BIGINT) + 1) * {0}) % 1000003) / 1000003.0"
_REPLIES = """{fixed},
draws AS (
  SELECT i, {roll} AS roll, {pick} AS pick, 1 - {u1} AS u1, {u2} AS u2
  FROM n),
rows AS (
  SELECT i,
         CASE WHEN pick < 0.1 THEN :person ELSE :other END AS user_id,
         CASE WHEN pick < 0.1 THEN :person_conversation ELSE :other_conversation END
           AS conversation_id,
         :start + i * :step AS started,
         :start + i * :step + exp(ln(0.3) + 0.5 * {normal}) AS first_token,
         :start + i * :step + exp(ln(0.3) + 0.5 * {normal}) + 1 + 3 * u2 AS finished,
         CASE WHEN roll < 0.90 THEN 'completed' WHEN roll < 0.95 THEN 'failed'
              WHEN roll < 0.98 THEN 'aborted' ELSE 'interrupted' END AS status
  FROM draws)
INSERT INTO {table} {columns}"""

_MESSAGES = """(id, conversation_id, role, content, text, status, metadata, created_at, updated_at)
SELECT {message_id}, conversation_id, 'assistant', {content}, 'ok', 'complete', {empty},
       {started}, {finished}
FROM rows"""

_GENERATIONS = """(id, user_id, conversation_id, response_message_id, endpoint, model, status,
 worker_id, heartbeat_at, started_at, first_token_at, finished_at)
SELECT {generation_id}, user_id, conversation_id, {message_id}, 'fake', 'fake-model', status,
       'bench', {finished}, {started},
       CASE WHEN status = 'interrupted' THEN NULL ELSE {first_token} END, {finished}
FROM rows"""

# What each reply cost (the dashboard's `usage`): two models, prompts of 200 to 999 tokens
# and answers of 50 to 349; a reply that did not complete counted by estimate.
_USAGE = """(message_id, generation_id, user_id, conversation_id, endpoint, model, agent_id,
 api_key_id, prompt_tokens, completion_tokens, total_tokens, estimated, created_at)
SELECT {message_id}, {generation_id}, user_id, conversation_id, 'fake',
       CASE WHEN i % 3 = 0 THEN 'fake-model-mini' ELSE 'fake-model' END, NULL, NULL,
       200 + i % 800, 50 + (i * 7) % 300, 250 + i % 800 + (i * 7) % 300,
       status <> 'completed', {finished}
FROM rows"""


def fill_statements(dialect: str) -> tuple[str, str, str, str]:
    """The INSERTs of the audit rows, the reply messages, their generations and usage."""
    time_of = _TIME[dialect].format
    draws = _DRAWS[dialect]
    audit = _AUDIT.format(
        draws=draws,
        reason=_PICK[dialect].format(name="reasons", draw="pick", size=len(REASONS)),
        id=_ID[dialect].format("a"),
        time=time_of(":start + i * :step"),
        owner=_PICK[dialect].format(name="owner_ids", draw="who", size=OWNERS),
        normal=_NORMAL,
    )
    parts = {
        "message_id": _ID[dialect].format("m"),
        "generation_id": _ID[dialect].format("g"),
        "content": _JSON[dialect].format('[{"type": "text", "text": "ok"}]'),
        "empty": _JSON[dialect].format("{}"),
        "started": time_of("started"),
        "first_token": time_of("first_token"),
        "finished": time_of("finished"),
    }
    replies = (
        _REPLIES.replace("{normal}", _NORMAL)
        .replace("{fixed}", _FIXED_DRAWS[dialect])
        .replace("{roll}", _HASHED.format(48271))
        .replace("{pick}", _HASHED.format(69621))
        .replace("{u1}", _HASHED.format(16807))
        .replace("{u2}", _HASHED.format(40692))
    )
    messages = replies.format(table="messages", columns=_MESSAGES.format(**parts))
    generations = replies.format(table="generations", columns=_GENERATIONS.format(**parts))
    usage = replies.format(table="reply_usage", columns=_USAGE.format(**parts))
    return audit, messages, generations, usage


def typed(sql: str) -> TextClause:
    """`sql` with its parameters typed, so PostgreSQL is told what each is."""
    types: dict[str, TypeEngine[Any]] = {
        "offset": Integer(),
        "stop": Integer(),
        "start": Float(),
        "step": Float(),
    }
    clause = text(sql)
    return clause.bindparams(
        *(bindparam(name, type_=types.get(name, String())) for name in clause._bindparams)
    )


async def fill(
    engine: AsyncEngine, rows: int, replies: int, owners: list[str], seats: list[tuple[str, str]]
) -> float:
    """Write the week ending now; the seconds it took."""
    started = time.monotonic()
    end = time.time()
    week = WEEK.total_seconds()
    audit, messages, generations, usage = fill_statements(engine.dialect.name)
    (person, person_conversation), (other, other_conversation) = seats
    # In chunks, each its own transaction: SQLite's one writer lock is not held for a
    # minute, which would time the server's own writers out.
    for offset in range(0, rows, CHUNK):
        async with engine.begin() as conn:
            await conn.execute(
                typed(audit),
                {
                    "offset": offset,
                    "stop": min(rows, offset + CHUNK),
                    "owner_ids": json.dumps(owners),
                    "reasons": json.dumps(REASONS),
                    "start": end - week,
                    "step": week / rows,
                },
            )
    for offset in range(0, replies, CHUNK):
        values = {
            "offset": offset,
            "stop": min(replies, offset + CHUNK),
            "person": person,
            "other": other,
            "person_conversation": person_conversation,
            "other_conversation": other_conversation,
            "start": end - week,
            "step": (week - 10) / replies,
        }
        async with engine.begin() as conn:
            await conn.execute(typed(messages), values)
            await conn.execute(typed(generations), values)
            await conn.execute(typed(usage), values)
    # The rows went in without the writers, so their hourly counts are filled as the
    # migration fills them (the same statement), as the writers would have kept them.
    async with engine.begin() as conn:
        await conn.execute(delete(AuditHour))
        await conn.execute(text(back_fill_sql(engine.dialect.name)))
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    else:
        # Index-only scans need the visibility map, as autovacuum keeps it on a live server.
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))
    return time.monotonic() - started


async def count_rows(engine: AsyncEngine, owner_id: str | None) -> tuple[float, int]:
    """(milliseconds, rows) of the baseline: a count of the week's audit rows in scope."""
    since = datetime.now(UTC) - WEEK - timedelta(hours=1)
    query = select(func.count()).select_from(AuditEvent).where(AuditEvent.created_at >= since)
    if owner_id is not None:
        query = query.where(AuditEvent.key_owner_id == owner_id)
    async with engine.connect() as conn:
        started = time.perf_counter()
        counted = (await conn.execute(query)).scalar_one()
        return (time.perf_counter() - started) * 1000, counted


async def ask(port: int, token: str, bucket: int = 3600) -> tuple[float, dict[str, Any]]:
    """(milliseconds, body) of one `GET /api/stats?window=7d&bucket=`."""
    conn = await Connection.open(port)
    try:
        started = time.perf_counter()
        response = await conn.request("GET", f"/api/stats?window=7d&bucket={bucket}", token=token)
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        conn.close()
    return elapsed, expect(response, 200, "GET /api/stats")


async def bench_backend(backend: Backend, args: argparse.Namespace, workdir: Path) -> None:
    server_cpus, load_cpus = cores()
    rows, replies = args.rows, args.rows // 10
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, client on {load_cpus}")
    here = workdir / backend.key
    here.mkdir()
    async with relaychat_server(backend, here, fake_port=1, env=extra_env(args)) as server:
        # The first user is the admin; the person owns one key of the ten.
        admin = await make_user(server.port, f"admin-{uuid.uuid4().hex[:6]}@example.com")
        person = await make_user(server.port, f"person-{uuid.uuid4().hex[:6]}@example.com")
        url = (
            backend.database_url or f"sqlite+aiosqlite:///{next(here.glob('data-*/relaychat.db'))}"
        )
        engine = create_engine(url)
        try:
            owners = [
                await user_id(server.port, person),
                *(str(uuid.uuid4()) for _ in range(OWNERS - 1)),
            ]
            seats = [
                (owners[0], person.conversation_id),
                (await user_id(server.port, admin), admin.conversation_id),
            ]
            took = await fill(engine, rows, replies, owners, seats)
            print(f"  wrote {rows:,} audit rows and {replies:,} replies in {took:.0f} s")
            pin(server.pid, server_cpus)
            pin(0, load_cpus)
            try:
                results = {
                    "admin": await measure(
                        server.port, engine, admin, None, args.requests, args.firsts
                    ),
                    "person": await measure(
                        server.port, engine, person, owners[0], args.requests, args.firsts
                    ),
                }
            finally:
                pin(0, ALL_CPUS)
        finally:
            await engine.dispose()
        error = first_error(server)
    report(backend, args, results)
    if error:
        print(f"  the server logged an error:\n{error}")


async def user_id(port: int, user: BenchUser) -> str:
    conn = await Connection.open(port)
    try:
        found = expect(await conn.request("GET", "/api/user", token=user.token), 200, "user")
    finally:
        conn.close()
    return str(found["id"])


@dataclass
class Measured:
    first: float  # ms of the first answer, before the server kept any bucket
    uncached: list[float]  # ms of first answers at other bucket sizes (nothing kept either)
    answers: list[float]  # ms of the answers after it
    counts: list[float]  # ms of the baseline, asked in turns with them
    counted: int
    body: dict[str, Any]


async def measure(
    port: int,
    engine: AsyncEngine,
    user: BenchUser,
    owner_id: str | None,
    requests: int,
    firsts: int,
) -> Measured:
    """The first answer, more first answers (each at a bucket size of its own, which the
    server keeps nothing of yet: one sample of a first answer says little on a busy
    machine), then answers and baselines in turns."""
    first, _ = await ask(port, user.token)
    uncached = [(await ask(port, user.token, 3600 + 60 * n))[0] for n in range(1, firsts + 1)]
    await count_rows(engine, owner_id)
    answers: list[float] = []
    counts: list[float] = []
    body: dict[str, Any] = {}
    counted = 0
    for _ in range(requests):
        elapsed, body = await ask(port, user.token)
        answers.append(elapsed)
        baseline, counted = await count_rows(engine, owner_id)
        counts.append(baseline)
        await asyncio.sleep(0.05)
    return Measured(first, uncached, answers, counts, counted, body)


def report(backend: Backend, args: argparse.Namespace, results: dict[str, Measured]) -> None:
    lines = []
    for who, found in results.items():
        answers, counts = found.answers, found.counts
        lines.append(
            [
                f"{who} ({found.body['scope']})",
                f"{found.counted:,}",
                f"{found.body['external']['totals']['total']:,}",
                f"{found.first:.0f}",
                f"{percentile(found.uncached, 0.5):.0f}",
                f"{percentile(answers, 0.5):.1f}",
                f"{percentile(answers, 0.95):.1f}",
                f"{percentile(counts, 0.5):.1f}",
                f"{percentile(counts, 0.95):.1f}",
                f"x{percentile(answers, 0.5) / percentile(counts, 0.5):.1f}",
            ]
        )
    headers = ["viewer", "rows counted", "in the answer", "first ms", "firsts p50 ms"]
    headers += ["stats p50 ms", "p95 ms"]
    headers += ["count(*) p50 ms", "p95 ms", "p50 ratio"]
    print(table(headers, lines))
    print(
        f"  {load_average()}; first: the server's first answer (counts every bucket: "
        f"nothing is kept yet); firsts: {args.firsts} more such, each at a bucket size of "
        f"its own (3660 s, 3720 s, ...); then {args.requests} answers each at 3600 s"
    )
    admin, person = results["admin"], results["person"]
    scale = f"{args.rows:,} audit rows" + (" (--quick)" if args.quick else "")
    p50 = percentile(admin.answers, 0.5)
    detail = (
        f"{scale}; admin p50 {p50:.0f} ms (x{p50 / percentile(admin.counts, 0.5):.1f} "
        f"count(*)), first {admin.first:.0f} ms (firsts p50 "
        f"{percentile(admin.uncached, 0.5):.0f} ms); person p95 "
        f"{percentile(person.answers, 0.95):.0f} ms"
    )
    p95 = percentile(admin.answers, 0.95)
    print(f"  admin p95 {p95:.0f} ms: {targets.record('stats.week_p95', backend.key, p95, detail)}")


async def main(args: argparse.Namespace) -> None:
    with workspace("stats") as workdir:
        async with backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite,pg")
    parser.add_argument("--rows", type=int, help="audit rows (default 1,000,000; quick 100,000)")
    parser.add_argument("--requests", type=int, help="answers per viewer (default 20; quick 8)")
    parser.add_argument(
        "--firsts", type=int, default=5, help="more first answers per viewer (default 5)"
    )
    parsed = parser.parse_args()
    parsed.rows = parsed.rows or (100_000 if parsed.quick else 1_000_000)
    parsed.requests = parsed.requests or (8 if parsed.quick else 20)
    run(main, parsed)
