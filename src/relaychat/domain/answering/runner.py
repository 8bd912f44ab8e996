"""The generation runner: streams replies in background tasks, apart from any HTTP request.

Each process has one runner. It listens for abort signals from every worker, keeps a
heartbeat (and the partial text) of its running generations in the database, and sweeps
up generations whose worker died: those whose lease lapsed, never a live one, whether or
not the workers share Redis (two hosts may share only the database). An owner whose lease
was taken over anyway (it stalled) still writes its reply when it finishes.

A run logs as the work of the request that asked for it (`generations.request_id`, carried
by its job), with its generation, conversation, owner and key; so do the callbacks it
queues, and the deliveries of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat import logs
from relaychat.domain.answering.agent_loop import Job, run_loop
from relaychat.domain.answering.generations import (
    ABORT_SIGNAL,
    Providers,
    error_code,
    interrupt_orphans,
    publish_unfinished,
)
from relaychat.domain.answering.listeners import ReplyEnded
from relaychat.domain.limits import storable_text
from relaychat.domain.messaging.content import flatten_text
from relaychat.domain.messaging.titles import generate_title
from relaychat.domain.outbound import callbacks
from relaychat.domain.outbound.callbacks import RequestRef
from relaychat.domain.publishing import publish_after_commit
from relaychat.domain.usage.counting import TokenCount
from relaychat.domain.usage.records import record_usage
from relaychat.errors import ErrorCode
from relaychat.llm.types import Finish
from relaychat.metrics import GENERATIONS
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import (
    ConversationUpdated,
    GenerationStarted,
    MessageCompleted,
    MessageFailed,
)
from relaychat.resources import ConversationOut, GenerationOut, MessageView
from relaychat.statuses import GenerationStatus, MessageStatus, StopReason
from relaychat.storage import tables
from relaychat.storage.db import after_commit
from relaychat.storage.models import Conversation, Generation
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

# The partial text of streaming replies, on the table rather than the entity: with a list of
# parameters the session runs it as one executemany (the entity's would be the ORM's bulk
# UPDATE by primary key, which takes no other condition).
_SAVE_PROGRESS = (
    update(tables.MESSAGES)
    .where(
        tables.MESSAGES.c.id == bindparam("message_id"),
        tables.MESSAGES.c.status == MessageStatus.STREAMING,
    )
    .values(text=bindparam("partial_text"), content=bindparam("partial_content"))
)


_CLAIM = (
    update(tables.GENERATIONS)
    .where(
        tables.GENERATIONS.c.id == bindparam("generation_id"),
        tables.GENERATIONS.c.worker_id == bindparam("owner_worker"),
        tables.GENERATIONS.c.status.in_((GenerationStatus.RUNNING, GenerationStatus.INTERRUPTED)),
    )
    .values(
        status=bindparam("new_status"),
        finished_at=bindparam("new_finished_at"),
        finish_reason=bindparam("new_finish_reason"),
        error=bindparam("new_error"),
        first_token_at=bindparam("new_first_token_at"),
    )
    .returning(*tables.GENERATIONS.c)
)
_WRITE_REPLY = (
    update(tables.MESSAGES)
    .where(tables.MESSAGES.c.id == bindparam("message_id"))
    .values(
        text=bindparam("new_text"),
        content=bindparam("new_content"),
        status=bindparam("new_status"),
        finish_reason=bindparam("new_finish_reason"),
        error=bindparam("new_error"),
        prompt_tokens=bindparam("new_prompt_tokens"),
        completion_tokens=bindparam("new_completion_tokens"),
        tokens_estimated=bindparam("new_tokens_estimated"),
        updated_at=bindparam("new_updated_at"),
    )
    .returning(*tables.MESSAGES.c)
)
_TOUCH = (
    update(tables.CONVERSATIONS)
    .where(tables.CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("new_updated_at"))
)


@dataclass(frozen=True)
class _Completed:
    """A completed reply's end as written: the reply (None: settled elsewhere), whether its
    conversation is still to be titled, and its text."""

    message: MessageView | None
    untitled: bool
    text: str


def _reply_end(
    job: Job, status: MessageStatus, finish_reason: str, tokens: TokenCount
) -> dict[str, Any]:
    """A reply's columns as it ended (`_finalize` updates them, `_EndInWrite` inserts them).
    Nothing counted (a call refused before any output) leaves the counts empty."""
    counted = tokens.total_tokens > 0
    return {
        "text": job.text,
        "content": [dict(part) for part in job.parts],
        "status": status,
        "finish_reason": finish_reason,
        "prompt_tokens": tokens.prompt_tokens if counted else None,
        "completion_tokens": tokens.completion_tokens if counted else None,
        "tokens_estimated": tokens.estimated and counted,
    }


def _first_token_at(job: Job) -> datetime | None:
    return datetime.fromtimestamp(job.first_token_at, UTC) if job.first_token_at else None


class _EndInWrite:
    """`Job.end_in_write` of a reply that completed before its rows' commit: they are
    inserted as it ended, so its end needs none of `_finalize`'s updates. Once they are,
    `closed` is what the runner does after the commit (`_then_close`)."""

    def __init__(self, runner: GenerationRunner, job: Job, finish: Finish | None) -> None:
        self.runner, self.job = runner, job
        self.finish_reason = finish.reason if finish else "stop"
        self.tokens = job.tokens()  # the run is over: they are final
        self.closed: _Completed | None = None

    def reply_columns(self) -> dict[str, Any]:
        return _reply_end(self.job, MessageStatus.COMPLETE, self.finish_reason, self.tokens)

    def generation_columns(self) -> dict[str, Any]:
        job = self.job
        return {
            "status": GenerationStatus.COMPLETED,
            # The run's own times: its row is written after it ended.
            "started_at": datetime.fromtimestamp(job.started_at, UTC),
            "first_token_at": _first_token_at(job),
            "finished_at": utcnow(),
            "finish_reason": self.finish_reason,
        }

    async def written(self, session: AsyncSession, reply: MessageView) -> None:
        runner, job = self.runner, self.job
        assert job.answers is not None  # a launched job's (`send_message` checks)
        settled = await runner._settle(
            session,
            job,
            reply,
            GenerationStatus.COMPLETED,
            self.finish_reason,
            None,
            tokens=self.tokens,
            answers=job.answers,
            at=utcnow(),
        )
        self.closed = await runner._announce_completed(session, job, settled)


class GenerationRunner:
    """Runs generations of this process and answers abort signals from any worker."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        providers: Providers,
        worker_id: str,
        heartbeat_seconds: float = 2.0,
        lease_seconds: float = 20.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.providers = providers
        self.worker_id = worker_id
        self.heartbeat_seconds = heartbeat_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.shutdown_seconds = 30.0
        # Generations someone here waits on (`expect_end`), and how each ended once it has:
        # a gateway request with `Prefer: wait` takes the reply as written instead of
        # reading it back (most replies run in the process that took their request).
        self._awaited: dict[str, tuple[MessageView, GenerationOut] | None] = {}

    def expect_end(self, generation_id: str) -> None:
        """Keep how this generation ends, if it ends here, for `take_end`."""
        self._awaited.setdefault(generation_id, None)

    def take_end(self, generation_id: str) -> tuple[MessageView, GenerationOut] | None:
        """The reply and generation as they ended here (committed); None if not (yet)
        known here. Either way the generation is no longer expected."""
        return self._awaited.pop(generation_id, None)

    async def start(self) -> None:
        """Listen for aborts, recover orphans of a previous run, start the heartbeat."""
        self._unsubscribe = self.bus.on_signal(ABORT_SIGNAL, self._on_abort)
        # Only lapsed leases: another process on this database may be running the rest,
        # and this one cannot tell (without Redis it does not even hear of it). A crashed
        # predecessor's generations lapse within a lease and are swept by the ticker.
        await self.sweep_orphans()
        self._ticker = asyncio.create_task(self._tick(), name="generation-heartbeat")

    async def close(self) -> None:
        """Stop every local generation, keeping its partial text as unfinished.

        Returns once nothing of this runner touches the database any more: the heartbeat
        is let finish its write rather than cancelled inside it, and each generation's
        closing transaction (shielded from the cancel) is awaited, not only its task.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._closing.set()
        if self._ticker is not None:
            await self._ticker
        for generation_id in list(self._tasks):
            self._stop(generation_id, StopReason.SHUTDOWN)
        deadline = asyncio.get_running_loop().time() + self.shutdown_seconds
        while pending := {*self._tasks.values(), *self._background}:
            left = deadline - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait(pending, timeout=max(left, 0))
            if not done:
                logger.warning("%d generation task(s) still running at shutdown", len(pending))
                return

    def launch(self, job: Job) -> None:
        """Run `job` in the background; the caller has committed its rows, or will and then
        sets `job.stored` (see `discard` for when the commit fails)."""
        self._jobs[job.generation_id] = job
        task = asyncio.create_task(self._run(job), name=f"generation-{job.generation_id}")
        self._tasks[job.generation_id] = task

    def launch_writing(self, job: Job, write: Coroutine[Any, Any, None]) -> None:
        """Run `job` at once, beside `write`, which stores its rows and settles `job.stored`
        (a reply whose first token must not wait for the database); `close` waits for both."""
        self.launch(job)
        self._in_background(write)

    def discard(self, job: Job) -> None:
        """Stop a job launched before its rows' commit, which failed: nothing is written."""
        if job.stored is not None and not job.stored.done():
            job.stored.set_result(False)
        task = self._tasks.pop(job.generation_id, None)
        self._jobs.pop(job.generation_id, None)  # a task cancelled unstarted cleans up nothing
        if task is not None:
            task.cancel()

    def running(self) -> list[str]:
        """Ids of the generations this process is running."""
        return list(self._tasks)

    def announce(self, session: AsyncSession, job: Job) -> None:
        """Publish generation.started for a job about to run once `session` commits it."""
        publish_after_commit(
            session,
            self.bus,
            job.user_id,
            GenerationStarted(
                conversation_id=job.conversation_id,
                generation_id=job.generation_id,
                message_id=job.message_id,
            ),
        )

    # -- abort ---------------------------------------------------------------------------

    def _on_abort(self, payload: dict[str, Any]) -> None:
        generation_id = payload.get("generation_id")
        if isinstance(generation_id, str) and generation_id in self._tasks:
            self._stop(generation_id, StopReason.ABORTED)

    def _stop(self, generation_id: str, reason: StopReason) -> None:
        job = self._jobs.get(generation_id)
        task = self._tasks.get(generation_id)
        if job is None or task is None or task.done():
            return
        job.stop_reason = job.stop_reason or reason
        task.cancel()

    # -- the run -------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        # Its own context, not the request's (which this task's copy still points at): a
        # run started by another's work (a scheduled post, an agent's send) is named right,
        # and its generation id never lands on the request's later lines.
        with logs.working(
            job.request_id,
            user_id=job.user_id,
            key_id=job.api_key_id,
            conversation_id=job.conversation_id,
            generation_id=job.generation_id,
        ):
            await self._run_logged(job)

    async def _run_logged(self, job: Job) -> None:
        logger.debug("generation %s started on %s", job.generation_id, job.endpoint)
        ending: Callable[[], Coroutine[Any, Any, None]]
        try:
            try:
                provider = self.providers.provider(job.endpoint)
                if job.tools_loader is not None:
                    await job.wait_stored()  # loading tools may write and publish
                    job.tools = await job.tools_loader()
                result = await run_loop(job, provider, self.bus)
            except asyncio.CancelledError:
                ending = functools.partial(self._end_unfinished, job)
            except Exception as exc:
                ending = functools.partial(self._end_failed, job, exc)
            else:
                ending = functools.partial(self._end_completed, job, result.finish)
                # Rows not committed yet: if their writer has not inserted them, it inserts
                # them as the reply ended, its end with them (`_then_close` then has only
                # to tell the caller). Not for a reply someone waits on in this process.
                if (
                    job.stored is not None
                    and not job.stored.done()
                    and job.generation_id not in self._awaited
                ):
                    job.end_in_write = _EndInWrite(self, job, result.finish)
            # Once the stream has ended, an abort or shutdown must not cut the closing
            # transaction in half: it runs as its own task, which `close` also waits for.
            await asyncio.shield(self._in_background(self._then_close(job, ending)))
        finally:
            self._tasks.pop(job.generation_id, None)
            self._jobs.pop(job.generation_id, None)

    async def _then_close(self, job: Job, ending: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A job launched before its rows' commit ends only once they are there (its end
        # written with them, or after), and writes nothing if they never were. A listener
        # whose reply ended without a committed end (not stored, settled elsewhere, the
        # closing transaction failed) is told there is no more.
        try:
            if not await job.wait_stored():
                return
            end = job.end_in_write
            if isinstance(end, _EndInWrite) and end.closed is not None:  # written with the rows
                self._completed(job, end.closed)
            else:
                await ending()
        finally:
            if job.listener is not None:
                job.listener.close()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _end_completed(self, job: Job, finish: Finish | None) -> None:
        async with self.sessionmaker() as session:
            closed = await self._complete(session, job, finish)
            await session.commit()
        self._completed(job, closed)

    async def _complete(self, session: AsyncSession, job: Job, finish: Finish | None) -> _Completed:
        """A completed reply's end, written in `session`'s transaction (not committed)."""
        message = await self._finalize(
            session,
            job,
            generation_status=GenerationStatus.COMPLETED,
            message_status=MessageStatus.COMPLETE,
            finish_reason=finish.reason if finish else "stop",
            failure=None,
        )
        return await self._announce_completed(session, job, message)

    async def _announce_completed(
        self, session: AsyncSession, job: Job, message: MessageView | None
    ) -> _Completed:
        """Queue a completed reply's event; whether its conversation is to be titled."""
        # Only a first exchange is titled: no other reply needs the row.
        conversation = (
            await session.get(Conversation, job.conversation_id)
            if job.wants_title and message is not None
            else None
        )
        if message is not None:
            publish_after_commit(
                session,
                self.bus,
                job.user_id,
                MessageCompleted(
                    conversation_id=job.conversation_id,
                    message_id=job.message_id,
                    message=message,
                ),
            )
        untitled = conversation is not None and not conversation.title
        return _Completed(message, untitled, job.text)

    def _completed(self, job: Job, closed: _Completed) -> None:
        """After a completed reply's end was committed: the caller told, a title asked for."""
        if job.listener is not None:
            job.listener.end(ReplyEnded(closed.message))
        if closed.untitled and closed.text:
            self._in_background(self._title(job, closed.text))

    async def _end_failed(self, job: Job, exc: Exception) -> None:
        code, detail = error_code(exc)
        detail = storable_text(detail)  # may quote an upstream's answer
        if code == ErrorCode.INTERNAL_ERROR:
            logger.exception("generation %s failed", job.generation_id, exc_info=exc)
        else:
            # The code only: a provider's message may quote part of the key it was sent.
            logger.warning(
                "generation %s on %s failed: %s",
                job.generation_id,
                job.endpoint,
                code,
            )
        async with self.sessionmaker() as session:
            message = await self._finalize(
                session,
                job,
                generation_status=GenerationStatus.FAILED,
                message_status=MessageStatus.ERROR,
                finish_reason="error",
                error=f"{code}: {detail}",
                failure=(code, detail),
            )
            if message is not None:
                publish_after_commit(
                    session,
                    self.bus,
                    job.user_id,
                    MessageFailed(
                        conversation_id=job.conversation_id,
                        message_id=job.message_id,
                        error=code,
                        detail=detail,
                    ),
                )
            await session.commit()
        if job.listener is not None:
            job.listener.end(ReplyEnded(message, error=code, detail=detail))

    async def _end_unfinished(self, job: Job) -> None:
        reason = job.stop_reason or StopReason.SHUTDOWN
        detail = "aborted by the user" if reason == StopReason.ABORTED else "the server shut down"
        async with self.sessionmaker() as session:
            message = await self._finalize(
                session,
                job,
                generation_status=(
                    GenerationStatus.ABORTED
                    if reason == StopReason.ABORTED
                    else GenerationStatus.INTERRUPTED
                ),
                message_status=MessageStatus.UNFINISHED,
                finish_reason=reason,
                error=None if reason == StopReason.ABORTED else f"interrupted: {detail}",
                failure=(reason, detail),
            )
            if message is not None:
                publish_unfinished(
                    session,
                    self.bus,
                    user_id=job.user_id,
                    generation_id=job.generation_id,
                    message=message,
                    reason=reason,
                )
            await session.commit()
        if job.listener is not None:
            job.listener.end(ReplyEnded(message, error=MessageStatus.UNFINISHED, detail=detail))

    async def _finalize(
        self,
        session: AsyncSession,
        job: Job,
        *,
        generation_status: GenerationStatus,
        message_status: MessageStatus,
        finish_reason: str,
        failure: tuple[str, str] | None,
        error: str | None = None,
    ) -> MessageView | None:
        """Write the final state and queue its callbacks; None if it was settled already.

        A sweep that took the generation over while this worker was alive but stalled
        marked it interrupted; the owner's outcome replaces that mark, so the reply is kept.
        Statements on the tables, no entities: every reply ends here, and the reply's row
        comes back from its UPDATE rather than from a SELECT and a flush. What the reply
        cost is written here too (a usage row), so it is counted exactly when the reply is.
        """
        now = utcnow()
        claimed = await session.execute(
            _CLAIM,
            {
                "generation_id": job.generation_id,
                "owner_worker": self.worker_id,
                "new_status": generation_status,
                "new_finished_at": now,
                "new_finish_reason": finish_reason,
                "new_error": error,
                "new_first_token_at": _first_token_at(job),
            },
        )
        row = claimed.first()
        if row is None:
            return None
        tokens = job.tokens()
        columns = _reply_end(job, message_status, finish_reason, tokens)
        written = (
            await session.execute(
                _WRITE_REPLY,
                {
                    "message_id": job.message_id,
                    **{f"new_{column}": value for column, value in columns.items()},
                    "new_error": error,
                    "new_updated_at": now,
                },
            )
        ).first()
        if written is None:  # the conversation was deleted meanwhile
            return None
        await session.execute(
            _TOUCH, {"conversation_id": job.conversation_id, "new_updated_at": now}
        )
        reply = await self._settle(
            session,
            job,
            MessageView.model_validate(dict(written._mapping)),
            generation_status,
            finish_reason,
            failure,
            tokens=tokens,
            answers=job.answers or await callbacks.request_of(session, row.request_message_id),
            at=now,
        )
        if job.generation_id in self._awaited:
            ended = (reply, GenerationOut.model_validate(dict(row._mapping)))

            async def keep() -> None:  # queued before the final event's publish
                if job.generation_id in self._awaited:
                    self._awaited[job.generation_id] = ended

            after_commit(session, keep)
        return reply

    async def _settle(
        self,
        session: AsyncSession,
        job: Job,
        reply: MessageView,
        generation_status: GenerationStatus,
        finish_reason: str,
        failure: tuple[str, str] | None,
        *,
        tokens: TokenCount,
        answers: RequestRef | None,
        at: datetime,
    ) -> MessageView:
        """What follows a reply's final rows in their transaction: its usage row (when its
        tokens count) and its callbacks; the reply as they see it."""
        GENERATIONS.labels(generation_status, job.endpoint).inc()
        logger.info(
            "generation %s %s on %s (%s)",
            job.generation_id,
            generation_status,
            job.endpoint,
            finish_reason,
        )
        if tokens.total_tokens > 0:
            await record_usage(
                session,
                message_id=job.message_id,
                generation_id=job.generation_id,
                user_id=job.user_id,
                conversation_id=job.conversation_id,
                endpoint=job.endpoint,
                model=job.request.model,
                agent_id=job.agent_id,
                api_key_id=job.api_key_id,
                tokens=tokens,
                at=at,
            )
        code, detail = failure or (None, None)
        return await callbacks.reply_ended(
            session,
            reply,
            answers,
            user_id=job.user_id,
            generation_id=job.generation_id,
            error_code=code,
            detail=detail,
        )

    async def _title(self, job: Job, reply: str) -> None:
        try:
            title = await generate_title(self.providers, job.endpoint, job.request, reply)
        except Exception:  # a title is a nicety; never let it disturb anything
            logger.warning("title generation failed for %s", job.conversation_id, exc_info=True)
            return
        if not title:
            return
        async with self.sessionmaker() as session:
            conversation = await session.get(Conversation, job.conversation_id)
            if conversation is None or conversation.title:
                return
            conversation.title = title
            publish_after_commit(
                session,
                self.bus,
                job.user_id,
                lambda: ConversationUpdated(
                    conversation_id=job.conversation_id,
                    conversation=ConversationOut.model_validate(conversation),
                ),
            )
            await session.commit()

    # -- heartbeat and sweeping ----------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            # Waits on `_closing` rather than being cancelled, so a write is never cut.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.heartbeat_seconds)
            if self._closing.is_set():
                return
            try:
                await self.save_progress()
                await self.sweep_orphans()
            except Exception:
                logger.warning("generation heartbeat failed", exc_info=True)

    async def sweep_orphans(self) -> int:
        """Mark generations whose lease lapsed as interrupted; return how many."""
        async with self.sessionmaker() as session:
            count = await interrupt_orphans(session, self.bus, stale_after=self.lease)
        if count:
            logger.warning("marked %d interrupted generation(s) as unfinished", count)
        return count

    async def save_progress(self) -> None:
        """Renew the lease of local generations and save their partial text."""
        # Not those whose rows are still being committed: a save would find no row, yet
        # count as done.
        jobs = [j for j in self._jobs.values() if j.stored is None or j.stored.done()]
        if not jobs:
            return
        now = utcnow()
        async with self.sessionmaker() as session:
            await session.execute(
                update(Generation)
                .where(
                    Generation.id.in_([j.generation_id for j in jobs]),
                    Generation.status == GenerationStatus.RUNNING,
                )
                .values(heartbeat_at=now)
            )
            # Snapshots taken before any await: what each job holds when it is written is
            # exactly what counts as saved, and only once the commit succeeded.
            written = [(job, job.snapshot()) for job in jobs if job.dirty()]
            if written:
                # One executemany for every reply, not a statement each.
                await session.execute(
                    _SAVE_PROGRESS,
                    [
                        {
                            "message_id": j.message_id,
                            "partial_text": flatten_text(parts),
                            "partial_content": parts,
                        }
                        for j, parts in written
                    ],
                )
            await session.commit()
        for job, parts in written:
            job.mark_saved(parts)
