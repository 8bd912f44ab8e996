"""`GET /api/search` over a million messages, against a plain page of the same person's
conversation list; and the message ingest rate with the search index against without it.

A fresh server on each backend; then 100 users (the person signed in, and 99 written
straight into the database), 10,000 conversations (100 each) and 1,000,000 messages (100
per conversation) are written by the database itself (one INSERT ... SELECT per chunk, as
bench/stats.py does), with the index's triggers on: the index is built as a live server
would build it. A message is 6 to 17 words drawn from a 20,000-word vocabulary with a
Zipf-like skew (a few words are in a third of all messages, most are rare); one message in
twenty is external, from an SMS number. `--quick` writes a tenth (100,000 messages over
1,000 conversations) and says so in the recorded row.

Queries (relaychat pinned to the last core, one at a time, as a person types), in turns
with the baseline `GET /api/convos?limit=20` (the same HTTP, authentication and one
indexed page read, no search): common, mid and rare words, two words, a phrase taken
from a stored message, a prefix, a word with an exclusion, a phone number. The person
owns 1 % of the data (10,000 messages). Reported: p50/p95 per kind and over all, the
baseline's, and their ratio. Target (`search.p95`): all queries' p95 within 50 ms.

Ingest: external messages posted through the gateway (`POST /api/messages/{id}` with the
system key, 64 keep-alive connections, each into its own conversation of the million-message
database, a dozen words and an SMS sender each, as `bench.gateway` drives it), in phases
with the index's message triggers and without them (dropped for the phase, on the same
server and database), alternating. Target (`search.ingest_share`): requests/s with the
index at least 80 % of without. Also shown, not a target: the database alone, the rows the
group commit writes (Core `executemany`, 100 per transaction) with and without the triggers
- there the index is the larger part of the work.

    uv run python -m bench.search [--quick] [--backends sqlite,pg] [--messages 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Integer, String, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import TextClause

from bench import targets
from bench.common import (
    ALL_CPUS,
    Backend,
    Connection,
    Proc,
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
from bench.gateway import API_KEY, drive, raw_post
from relaychat.storage.db import create_engine
from relaychat.storage.models import User
from relaychat.storage.tables import CONVERSATIONS, MESSAGES

USERS = 100
PER_CONVERSATION = 100
CHUNK = 50_000
VOCABULARY = 20_000
SYLLABLES = "ka lo mi ne ru sa ti vo ze bri dan fel gor hul jin kra mop nix pel quo"
ROUNDS = 4  # ingest phases per variant, alternating
CONNECTIONS = 64


def vocabulary() -> list[str]:
    """Distinct made-up words, the same every run (two to four syllables)."""
    rng = random.Random(16)
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        words["".join(rng.choice(SYLLABLES.split()) for _ in range(rng.randint(2, 4)))] = None
    return list(words)


# Word k of the vocabulary (table bench_words, made for the fill), k = floor(N * u^3): word
# 0 is in about a third of the messages, the median word in a handful. `i - i`: a subquery
# that names no column of the row is run once for all rows, its random() drawn once.
_WORD = {
    "sqlite": "(SELECT w FROM bench_words WHERE k = i - i + CAST("
    f"pow((abs(random()) % 1000000) / 1000000.0, 3) * {VOCABULARY} AS INTEGER))",
    # PostgreSQL would draw again for every row the subquery scans: an array instead.
    "postgresql": f"v.words[1 + CAST(floor(power(random(), 3) * {VOCABULARY}) AS integer)]",
}
_ROWS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT :offset UNION ALL SELECT i + 1 FROM n "
    "WHERE i + 1 < :stop)",
    "postgresql": "WITH v AS (SELECT array_agg(w ORDER BY k) AS words FROM bench_words), "
    "n AS (SELECT i FROM generate_series(:offset, :stop - 1) AS i)",
}
_ID = {"sqlite": "printf('{0}%035d', {1})", "postgresql": "'{0}' || lpad(({1})::text, 35, '0')"}
_NOW = {"sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({0}) || ' seconds') || '000'",
        "postgresql": "now() - make_interval(secs => {0})"}  # fmt: skip
_JSON = {"sqlite": "{0}", "postgresql": "CAST({0} AS jsonb)"}


def message_fill(dialect: str) -> str:
    """INSERT ... SELECT of messages `offset` to `stop`: message i is the (i % 100)th of
    conversation i // 100; its words and roles drawn by the database."""
    words = " || ' ' || ".join([_WORD[dialect]] * 6)
    optional = " || ".join(
        f"CASE WHEN (abs(random()) % 100) < {90 - 8 * k} THEN ' ' || {_WORD[dialect]} ELSE '' END"
        for k in range(11)
    )
    if dialect == "postgresql":
        optional = optional.replace("(abs(random()) % 100)", "floor(random() * 100)")
    external = "(i % 20 = 7)"
    phone = {"sqlite": "'+1415' || printf('%07d', i % 9999991)",
             "postgresql": "'+1415' || lpad((i % 9999991)::text, 7, '0')"}[dialect]  # fmt: skip
    metadata = {
        "sqlite": f"CASE WHEN {external} THEN json_object('source', 'sms', 'phoneNumber', "
        f"{phone}) ELSE '{{}}' END",
        "postgresql": f"CASE WHEN {external} THEN jsonb_build_object('source', 'sms', "
        f"'phoneNumber', {phone}) ELSE '{{}}'::jsonb END",
    }[dialect]
    return f"""{_ROWS[dialect]},
rows AS (SELECT i, {words} || {optional} AS body FROM n{", v" if dialect == "postgresql" else ""})
INSERT INTO messages (id, conversation_id, role, sender, content, text, status, metadata,
                      created_at, updated_at)
SELECT {_ID[dialect].format("m", "i")}, {_ID[dialect].format("c", f"i / {PER_CONVERSATION}")},
       CASE WHEN {external} THEN 'external' WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
       NULL, {_JSON[dialect].format("'[]'")}, body, 'complete', {metadata},
       {_NOW[dialect].format(":stop - i")}, {_NOW[dialect].format(":stop - i")}
FROM rows"""


def typed(sql: str) -> TextClause:
    clause = text(sql)
    kinds = {"offset": Integer(), "stop": Integer()}
    return clause.bindparams(
        *(bindparam(name, type_=kinds.get(name, String())) for name in clause._bindparams)
    )


async def fill(engine: AsyncEngine, person_id: str, messages: int, words: list[str]) -> float:
    """Users, conversations and messages; the seconds it took."""
    started = time.monotonic()
    dialect = engine.dialect.name
    conversations = messages // PER_CONVERSATION
    now = datetime.now(UTC)
    users = [f"user-{n:03d}-{uuid.uuid4().hex[:8]}" for n in range(1, USERS)]
    owners = [person_id, *users]
    async with engine.begin() as conn:
        await conn.execute(
            insert(User),
            [{"id": u, "email": f"{u}@example.com", "name": "bench", "password_hash": "x"}
             for u in users],
        )  # fmt: skip
        await conn.execute(
            insert(CONVERSATIONS),
            [
                {
                    "id": "c" + f"{n:035d}",
                    "user_id": owners[n % USERS],
                    "title": f"{words[n % 500]} {words[(n * 7) % 3000]}",
                    "model_parameters": {},
                    "archived": False,
                    "unseen_external": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(conversations)
            ],
        )
        await conn.execute(text("CREATE TABLE bench_words (k INTEGER PRIMARY KEY, w TEXT)"))
        await conn.execute(
            text("INSERT INTO bench_words (k, w) VALUES (:k, :w)"),
            [{"k": k, "w": w} for k, w in enumerate(words)],
        )
    statement = typed(message_fill(dialect))
    for offset in range(0, messages, CHUNK):
        async with engine.begin() as conn:
            await conn.execute(
                statement,
                {
                    "offset": offset,
                    "stop": min(messages, offset + CHUNK),
                },
            )
        print(f"  {min(messages, offset + CHUNK):,}/{messages:,} messages", flush=True)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE bench_words"))
    if dialect == "sqlite":
        async with engine.begin() as conn:
            # The index stays as the triggers left it (FTS5 merges its segments as it goes).
            await conn.execute(text("ANALYZE"))
    else:
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))
    return time.monotonic() - started


async def samples(engine: AsyncEngine, person_id: str) -> dict[str, list[str]]:
    """Queries of each kind, from the person's own messages."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT m.text, m.metadata FROM messages m JOIN conversations c "
                    "ON c.id = m.conversation_id WHERE c.user_id = :u ORDER BY m.id LIMIT 2000"
                ),
                {"u": person_id},
            )
        ).all()
    rng = random.Random(7)
    texts = [row[0].split() for row in rows if row[0]]
    counts: dict[str, int] = defaultdict(int)
    for words in texts:
        for word in set(words):
            counts[word] += 1
    ranked = sorted(counts, key=lambda w: -counts[w])
    common, mid, rare = ranked[:20], ranked[100:400], ranked[-300:]
    phones = [
        json.loads(row[1])["phoneNumber"] if isinstance(row[1], str) else row[1]["phoneNumber"]
        for row in rows
        if row[1] and "phoneNumber" in (json.loads(row[1]) if isinstance(row[1], str) else row[1])
    ]
    phrases = []
    for words in rng.sample(texts, 20):
        at = rng.randrange(len(words) - 1)
        phrases.append(f'"{words[at]} {words[at + 1]}"')
    return {
        "common word": common[:10],
        "mid word": rng.sample(mid, 10),
        "rare word": rng.sample(rare, 10),
        "two words": [f"{rng.choice(mid)} {rng.choice(common)}" for _ in range(10)],
        "phrase": phrases[:10],
        "prefix": [f"{w[:4]}*" for w in rng.sample(mid, 10)],
        "exclusion": [f"{rng.choice(mid)} -{rng.choice(common)}" for _ in range(10)],
        "phone": [f"{p[:2]} {p[2:5]} {p[5:8]} {p[8:]}" for p in rng.sample(phones, 10)],
    }


async def timed(conn: Connection, path: str, token: str) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await conn.request("GET", path, token=token)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, expect(response, 200, path)


async def measure_queries(
    port: int, token: str, queries: dict[str, list[str]], rounds: int
) -> tuple[dict[str, list[float]], list[float], dict[str, int]]:
    """(ms per kind, baseline ms, results found per kind)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    baseline: list[float] = []
    found: dict[str, int] = defaultdict(int)
    conn = await Connection.open(port)
    try:
        for _ in range(rounds):
            for kind, qs in queries.items():
                for q in qs:
                    elapsed, body = await timed(conn, f"/api/search?{urlencode({'q': q})}", token)
                    by_kind[kind].append(elapsed)
                    found[kind] += len(body["results"])
                    elapsed, _ = await timed(conn, "/api/convos?limit=20", token)
                    baseline.append(elapsed)
    finally:
        conn.close()
    return by_kind, baseline, found


# -- ingest -------------------------------------------------------------------------------

_TRIGGERS = ("search_message_insert", "search_message_update", "search_message_delete")


async def without_triggers(engine: AsyncEngine) -> list[str]:
    """Drop the message triggers of the index; the statements that make them again."""
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            made = [
                row[0]
                for row in await conn.execute(
                    text(
                        "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                        "AND tbl_name = 'messages' AND name LIKE 'search_%'"
                    )
                )
            ]
            for name in _TRIGGERS:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            return made
        made = [
            row[0]
            for row in await conn.execute(
                text(
                    "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
                    "WHERE tgrelid = 'messages'::regclass AND tgname LIKE 'search_%'"
                )
            )
        ]
        for name in _TRIGGERS:
            await conn.execute(text(f"DROP TRIGGER {name} ON messages"))
        return made


async def db_ingest(engine: AsyncEngine, conversations: list[str], count: int, batch: int) -> float:
    """Messages per second, written as the group commit writes them, the database alone."""
    rows = [
        {
            "id": str(uuid.uuid4()),
            "conversation_id": conversations[n % len(conversations)],
            "role": "external",
            "sender": "sms",
            "content": [{"type": "text", "text": f"inbound number {n} about kamira lovo"}],
            "text": f"inbound number {n} about kamira lovo",
            "status": "complete",
            "metadata": {"source": "sms", "phoneNumber": f"+1415{n:07d}"},
            "created_at": datetime.now(UTC),
            "updated_at": datetime.now(UTC),
        }
        for n in range(count)
    ]
    started = time.perf_counter()
    for at in range(0, count, batch):
        async with engine.begin() as conn:
            await conn.execute(insert(MESSAGES), rows[at : at + batch])
    return count / (time.perf_counter() - started)


@dataclass
class Ingest:
    """Requests/s through the gateway and rows/s of the database alone, per phase."""

    gateway: list[float] = field(default_factory=list)
    database: list[float] = field(default_factory=list)


def gateway_requests(port: int, conversations: list[str], words: list[str]) -> list[bytes]:
    """One request per connection, each into its own conversation, as an SMS gateway posts."""
    rng = random.Random(3)
    requests = []
    for n in range(CONNECTIONS):
        body = {
            "role": "external",
            "content": " ".join(rng.choice(words[:3000]) for _ in range(12)),
            "metadata": {"source": "sms", "phoneNumber": f"+1415555{n:04d}"},
            "respond": False,
        }
        path = f"/api/messages/{conversations[n % len(conversations)]}"
        requests.append(raw_post(port, path, {"x-api-key": API_KEY}, json.dumps(body).encode()))
    return requests


async def measure_ingest(
    engine: AsyncEngine,
    server: Proc,
    conversations: list[str],
    words: list[str],
    args: argparse.Namespace,
) -> tuple[Ingest, Ingest]:
    """(with the index, without), in alternating phases."""
    with_index, without = Ingest(), Ingest()
    server_cpus, load_cpus = cores()
    requests = gateway_requests(server.port, conversations, words)
    await drive(server.port, requests, CONNECTIONS, 1.0, server.pid)  # warm-up
    await db_ingest(engine, conversations, args.ingest // 4, 100)
    for _ in range(ROUNDS):
        for side in (with_index, without):
            again = await without_triggers(engine) if side is without else []
            try:
                pin(server.pid, server_cpus)
                pin(0, load_cpus)
                try:
                    load = await drive(server.port, requests, CONNECTIONS, args.seconds, server.pid)
                finally:
                    pin(0, ALL_CPUS)
                if load.errors:
                    raise RuntimeError(f"ingest: {dict(load.errors)} {load.first_error}")
                side.gateway.append(load.rps)
                side.database.append(await db_ingest(engine, conversations, args.ingest, 100))
            finally:
                async with engine.begin() as conn:
                    for statement in again:
                        await conn.execute(text(statement))
    return with_index, without


async def bench_backend(backend: Backend, args: argparse.Namespace, workdir: Path) -> None:
    server_cpus, load_cpus = cores()
    print(f"\n=== {backend.name}: relaychat on cpu {server_cpus}, client on {load_cpus}")
    here = workdir / backend.key
    here.mkdir()
    env = {
        **extra_env(args),
        "ACCESS_TOKEN_TTL_SECONDS": "86400",
        "EXTERNAL_MESSAGE_API_KEY": API_KEY,
    }
    async with relaychat_server(backend, here, fake_port=1, env=env) as server:
        person = await make_user(server.port, f"person-{uuid.uuid4().hex[:6]}@example.com")
        url = (
            backend.database_url or f"sqlite+aiosqlite:///{next(here.glob('data-*/relaychat.db'))}"
        )
        engine = create_engine(url)
        try:
            conn = await Connection.open(server.port)
            try:
                me = expect(await conn.request("GET", "/api/user", token=person.token), 200, "me")
            finally:
                conn.close()
            words = vocabulary()
            took = await fill(engine, str(me["id"]), args.messages, words)
            print(f"  wrote {args.messages:,} messages with the index on in {took:.0f} s")
            queries = await samples(engine, str(me["id"]))
            pin(server.pid, server_cpus)
            pin(0, load_cpus)
            try:
                by_kind, baseline, found = await measure_queries(
                    server.port, person.token, queries, args.rounds
                )
            finally:
                pin(0, ALL_CPUS)
            conversations = ["c" + f"{n:035d}" for n in range(0, args.messages // 100, 7)]
            with_index, without = await measure_ingest(engine, server, conversations, words, args)
        finally:
            await engine.dispose()
        error = first_error(server)
    report(backend, args, by_kind, baseline, found, with_index, without)
    if error:
        print(f"  the server logged an error:\n{error}")


def report(
    backend: Backend,
    args: argparse.Namespace,
    by_kind: dict[str, list[float]],
    baseline: list[float],
    found: dict[str, int],
    with_index: Ingest,
    without: Ingest,
) -> None:
    lines = []
    for kind, values in by_kind.items():
        lines.append(
            [
                kind,
                len(values),
                f"{found[kind] / len(values):.1f}",
                f"{percentile(values, 0.5):.1f}",
                f"{percentile(values, 0.95):.1f}",
                f"{max(values):.1f}",
            ]
        )
    every = [v for values in by_kind.values() for v in values]
    lines.append(
        ["all queries", len(every), "", f"{percentile(every, 0.5):.1f}",
         f"{percentile(every, 0.95):.1f}", f"{max(every):.1f}"]
    )  # fmt: skip
    lines.append(
        ["baseline: /api/convos", len(baseline), "20", f"{percentile(baseline, 0.5):.1f}",
         f"{percentile(baseline, 0.95):.1f}", f"{max(baseline):.1f}"]
    )  # fmt: skip
    print(table(["query", "asked", "results", "p50 ms", "p95 ms", "max ms"], lines))
    p50, p95 = percentile(every, 0.5), percentile(every, 0.95)
    ratio = p50 / percentile(baseline, 0.5)
    print(f"  {load_average()}; search p50 x{ratio:.1f} the conversation list's")
    scale = f"{args.messages:,} messages" + (" (--quick)" if args.quick else "")
    detail = f"{scale}; p50 {p50:.1f} ms (x{ratio:.1f} GET /api/convos)"
    print(f"  search p95 {p95:.1f} ms: {targets.record('search.p95', backend.key, p95, detail)}")

    rows = []
    for name, pick in (
        ("gateway (requests/s)", "gateway"),
        ("database alone (rows/s)", "database"),
    ):
        mine, theirs = getattr(with_index, pick), getattr(without, pick)
        rows.append(
            [
                name,
                len(mine),
                f"{percentile(mine, 0.5):.0f}",
                f"{percentile(theirs, 0.5):.0f}",
                f"{100 * percentile(mine, 0.5) / percentile(theirs, 0.5):.1f} %",
            ]
        )
    print(table(["ingest, external messages", "phases", "with index", "without", "share"], rows))
    rate_with, rate_without = percentile(with_index.gateway, 0.5), percentile(without.gateway, 0.5)
    share = 100 * rate_with / rate_without
    database = 100 * percentile(with_index.database, 0.5) / percentile(without.database, 0.5)
    detail = (
        f"{scale}; gateway {rate_with:.0f} vs {rate_without:.0f} req/s, {CONNECTIONS} "
        f"connections; the database alone {database:.0f} %"
    )
    verdict = targets.record("search.ingest_share", backend.key, share, detail)
    print(f"  gateway ingest with the index {share:.1f} % of without: {verdict}")


async def main(args: argparse.Namespace) -> None:
    with workspace("search") as workdir:
        async with backends(args) as chosen:
            for backend in chosen:
                await bench_backend(backend, args, workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, default_backends="sqlite,pg")
    parser.add_argument("--messages", type=int, help="default 1,000,000; quick 100,000")
    parser.add_argument("--rounds", type=int, help="times each query is asked (default 5)")
    parser.add_argument("--ingest", type=int, help="rows per database-alone phase (default 20,000)")
    parser.add_argument("--seconds", type=float, help="seconds per gateway phase (default 5)")
    parsed = parser.parse_args()
    parsed.messages = parsed.messages or (100_000 if parsed.quick else 1_000_000)
    parsed.rounds = parsed.rounds or (2 if parsed.quick else 5)
    parsed.ingest = parsed.ingest or (5_000 if parsed.quick else 20_000)
    parsed.seconds = parsed.seconds or (3.0 if parsed.quick else 5.0)
    run(main, parsed)
