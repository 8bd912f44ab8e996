"""Group commit for external messages: one transaction for every message waiting.

An external message into an existing conversation needs only writes: its row, the
conversation's `updated_at` and unseen count, its webhook deliveries and its audit row.
Committing them one request at a time costs a transaction, a pooled connection and an ORM
unit of work per message, and on SQLite every writer queues for the one write lock. Here
one task per process takes whatever messages are waiting when it is free, writes them
all with SQLAlchemy Core (`executemany`) in one transaction and only then answers each
caller. So a 2xx still means committed, a batch costs about what one message did, and
the batch grows by itself with the load (nothing waits on a timer).

Per conversation of the batch the conversation row is updated first: that is the thread
lock (`messages.lock_thread`), so the parent each message gets is the conversation's
latest, across workers, and messages of one batch chain in arrival order. The update
names the owner the caller saw, so a conversation deleted (or deleted and made again by
someone else) since is reported as `Stale` and nothing is written for it.

Everything the message owes is in the same transaction: a committed message always has its
audit row and its webhook deliveries, and events go out only after the commit. If a batch
fails as a whole, each of its messages is retried alone, so one bad message fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Integer, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from relaychat import logs
from relaychat.domain.messaging.messages import ThreadTip, later_than, message_row
from relaychat.domain.outbound import outbox, webhook_routes, webhooks
from relaychat.domain.outbound.webhook_routes import WebhookRoutes
from relaychat.realtime.bus import EventBus, encode_body
from relaychat.realtime.events import MessageCreated
from relaychat.resources import MessageView
from relaychat.statuses import MessageRole, MessageStatus, OutboxKind
from relaychat.storage.audit_hours import add_audit_hours
from relaychat.storage.tables import (
    AUDIT_EVENTS,
    CONVERSATIONS,
    MESSAGES,
    OUTBOX,
)
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)


# The statements of every batch, built once: building them per batch (expressions,
# coercions, cache keys) cost more CPU than running them (bench.gateway --profile).
_LOCK = (
    update(CONVERSATIONS)
    .where(
        CONVERSATIONS.c.id == bindparam("cid"),
        CONVERSATIONS.c.user_id == bindparam("owner"),
    )
    .values(
        updated_at=bindparam("now", type_=CONVERSATIONS.c.updated_at.type),
        unseen_external=CONVERSATIONS.c.unseen_external + bindparam("unseen", type_=Integer),
    )
)
# The batch's conversations with their owner and latest message, read after _LOCK has
# locked them: what the previous holders committed is what this sees (one statement for
# the whole batch; the subquery walks ix_messages_conversation_order).
_LATEST = MESSAGES.alias("latest")
_TIPS = (
    select(
        CONVERSATIONS.c.id,
        CONVERSATIONS.c.user_id,
        MESSAGES.c.id.label("tip_id"),
        MESSAGES.c.created_at.label("tip_at"),
    )
    .select_from(
        CONVERSATIONS.outerjoin(
            MESSAGES,
            MESSAGES.c.id
            == select(_LATEST.c.id)
            .where(_LATEST.c.conversation_id == CONVERSATIONS.c.id)
            .order_by(_LATEST.c.created_at.desc(), _LATEST.c.id.desc())
            .limit(1)
            .correlate(CONVERSATIONS)
            .scalar_subquery(),
        )
    )
    .where(CONVERSATIONS.c.id.in_(bindparam("cids", expanding=True)))
)

# Queued by `close`: the writer stops once it reaches it.
_STOP = object()


class Stale(Exception):
    """The conversation is gone, or no longer the owner's the caller saw: nothing written."""


@dataclass
class Pending:
    """One message waiting for its batch."""

    conversation_id: str
    owner_id: str
    role: MessageRole
    sender: str | None
    content: list[dict[str, Any]]
    text: str
    metadata: dict[str, Any]
    api_key_id: str | None
    unseen: bool
    # The audit row's values, built when its batch is written, from the message's id, its
    # owner and how the owner was found; None when the caller audits by itself.
    audit: Callable[[str, str, str], dict[str, Any]] | None = None
    strategy: str = "conversation_owner"
    # The request that sent it, read where it is queued: the writer's task serves many.
    request_id: str | None = field(default_factory=logs.current_request_id)
    future: asyncio.Future[Written] = field(default_factory=lambda: _loop().create_future())


@dataclass(frozen=True)
class Written:
    """A committed message as clients see it, and the id its `message.created` got."""

    message: MessageView
    event_id: str | None


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@dataclass
class _Staged:
    pending: Pending
    # The row as inserted: every column named, so the rows of one `executemany` agree.
    row: dict[str, Any]
    event: MessageCreated


class GroupCommitWriter:
    """The per-process writer of external messages (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        bus: EventBus,
        *,
        wake_outbox: Callable[[], None] | None = None,
        routes: WebhookRoutes | None = None,
        max_batch: int = 256,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.routes = routes
        self.wake_outbox = wake_outbox
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Pending | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit-writer")

    async def close(self) -> None:
        """Write everything queued, then stop: the writer is let finish, never cancelled
        inside a batch, so no transaction is cut and nothing queued is dropped."""
        if self._task is None:
            return
        task, self._task = self._task, None  # refuse new messages from here on
        self._queue.put_nowait(_STOP)
        await task

    async def write(self, pending: Pending) -> Written:
        """Queue `pending` and return once its batch has committed (raises `Stale`)."""
        if self._task is None:
            raise RuntimeError("the group-commit writer is not running")
        self._queue.put_nowait(pending)
        return await pending.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = batch[-1] is _STOP  # the last thing ever queued
            if stopping:
                batch.pop()
            if batch:
                await self._write(cast(list[Pending], batch))
            if stopping:
                return

    async def _write(self, batch: list[Pending]) -> None:
        try:
            staged, stale, delivering = await self._commit(batch)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            logger.warning("a batch of %d messages failed; writing each alone", len(batch))
            for pending in batch:
                await self._write([pending])
            return
        for pending in stale:
            _settle(pending, Stale())
        if delivering and self.wake_outbox is not None:
            self.wake_outbox()
        event_ids: list[str | None]
        try:
            # Together: on Redis one round trip for the batch, not one per message.
            event_ids = list(
                await self.bus.publish_many([(p.pending.owner_id, p.event) for p in staged])
            )
        except Exception:  # committed: the caller's answer must not depend on the bus
            logger.exception("could not publish message.created for %d messages", len(staged))
            event_ids = [None] * len(staged)
        for item, event_id in zip(staged, event_ids, strict=True):
            _settle(item.pending, Written(item.event.message, event_id))

    async def _commit(self, batch: list[Pending]) -> tuple[list[_Staged], list[Pending], bool]:
        """Write the batch; what was written, what was stale, and whether callbacks were queued."""
        staged: list[_Staged] = []
        stale: list[Pending] = []
        by_conversation: dict[str, list[Pending]] = {}
        for pending in batch:
            by_conversation.setdefault(pending.conversation_id, []).append(pending)
        groups: dict[str, list[Pending]] = {}
        # In the order of their ids: workers locking conversations in one order cannot
        # deadlock on them.
        for conversation_id in sorted(by_conversation):
            messages = by_conversation[conversation_id]
            if any(p.owner_id != messages[0].owner_id for p in messages):
                stale.extend(messages)  # callers disagree on the owner: each finds out alone
            else:
                groups[conversation_id] = messages
        async with self.engine.begin() as conn:
            tips = await _lock(conn, groups)
            for conversation_id, messages in groups.items():
                tip = tips.get(conversation_id)
                if tip is None:
                    stale.extend(messages)
                    continue
                staged.extend(_chain(conversation_id, messages, tip))
            if not staged:
                return staged, stale, False
            await conn.execute(insert(MESSAGES), [item.row for item in staged])
            deliveries = await _deliveries(conn, staged, self.routes)
            if deliveries:
                await conn.execute(insert(OUTBOX), deliveries)
            audits = [
                p.audit(item.row["id"], p.owner_id, p.strategy)
                for item in staged
                if (p := item.pending).audit is not None
            ]
            if audits:
                await conn.execute(insert(AUDIT_EVENTS), audits)
                await add_audit_hours(conn, audits)
        return staged, stale, bool(deliveries)


async def _lock(conn: AsyncConnection, groups: dict[str, list[Pending]]) -> dict[str, ThreadTip]:
    """Lock each conversation (`messages.lock_thread`'s write, naming the owner the callers
    saw); the latest message (id, time) of each that is still that owner's."""
    if not groups:
        return {}
    now = utcnow()
    await conn.execute(
        _LOCK,
        [
            {
                "cid": conversation_id,
                "owner": messages[0].owner_id,
                "now": now,
                "unseen": sum(1 for p in messages if p.unseen),
            }
            for conversation_id, messages in groups.items()
        ],
    )
    rows = await conn.execute(_TIPS, {"cids": list(groups)})
    return {
        row.id: ThreadTip(row.tip_id, row.tip_at)
        for row in rows
        if row.user_id == groups[row.id][0].owner_id
    }


def _chain(conversation_id: str, batch: list[Pending], tip: ThreadTip) -> list[_Staged]:
    """The batch's messages of one locked conversation, chained after its latest message."""
    parent_id, moment = tip.message_id, tip.created_at
    staged: list[_Staged] = []
    for pending in batch:
        moment = later_than(moment)
        # Plain values, not an ORM object: this runs for every message the gateway takes.
        row = message_row(
            conversation_id=conversation_id,
            parent_message_id=parent_id,
            role=pending.role,
            sender=pending.sender,
            content=pending.content,
            text=pending.text,
            status=MessageStatus.COMPLETE,
            metadata=pending.metadata,
            api_key_id=pending.api_key_id,
            created_at=moment,
        )
        view = MessageView.model_validate(row)
        event = MessageCreated(
            conversation_id=conversation_id, message_id=view.message_id, message=view
        )
        try:
            # Rendered before the commit: what cannot be sent to clients is never stored.
            encode_body(event)
        except Exception as exc:
            _settle(pending, exc)
            continue
        staged.append(_Staged(pending, row, event))
        parent_id = row["id"]
    return staged


async def _deliveries(
    conn: AsyncConnection, staged: list[_Staged], routes: WebhookRoutes | None
) -> list[dict[str, Any]]:
    """The outbox rows of `message.created` for every enabled endpoint that wants it, as
    `webhooks.emit` would queue them; what is not cached is loaded with one query."""
    scopes = {(item.pending.owner_id, item.pending.api_key_id) for item in staged}
    by_scope = (
        await routes.of_many(conn, scopes)
        if routes is not None
        else await webhook_routes.load(conn, scopes)
    )
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for item in staged:
        body: str | None = None
        for endpoint in by_scope[(item.pending.owner_id, item.pending.api_key_id)]:
            if "message.created" not in endpoint.events:
                continue
            body = body or webhooks.event_body(
                "message.created",
                now,
                {
                    "conversation_id": item.event.conversation_id,
                    "message": item.event.message.model_dump(mode="json"),
                },
            )
            rows.append(
                outbox.pending_row(
                    kind=OutboxKind.WEBHOOK,
                    target_id=endpoint.id,
                    user_id=endpoint.user_id,
                    event_type="message.created",
                    payload=body,
                    request_id=item.pending.request_id,
                    now=now,
                )
            )
    return rows


def _settle(pending: Pending, outcome: Written | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, BaseException):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)
