"""The statuses and other closed vocabularies stored in columns and shown by the API: one
enumeration per concept (a status, a role, a kind).

They live here, at the top of the package, because the storage models, the domain and the
API schemas all name them and storage may not import the domain. The values are what the
database holds and the JSON says; a StrEnum member compares and serialises as its value.
"""

from __future__ import annotations

from enum import StrEnum


class GenerationStatus(StrEnum):
    """Where a run of a model stands (`generations.status`)."""

    RUNNING = "running"
    COMPLETED = "completed"
    #: ended by an error; the reply is `error`
    FAILED = "failed"
    #: stopped by its owner; the reply keeps its partial text
    ABORTED = "aborted"
    #: its worker shut down or went quiet; the reply keeps its partial text
    INTERRUPTED = "interrupted"


class MessageStatus(StrEnum):
    """Whether a message's content is final (`messages.status`)."""

    COMPLETE = "complete"
    #: a reply being written
    STREAMING = "streaming"
    #: a reply stopped early (aborted or interrupted), its partial text kept
    UNFINISHED = "unfinished"
    #: a reply that failed; `error` says why
    ERROR = "error"


class DeliveryState(StrEnum):
    """Where a channel's reply stands on its way to the sender's phone (`GET
    /api/channels/{id}/messages`; the reply's `metadata.delivery.state` uses all but
    `undelivered`, which it counts as `failed`)."""

    #: queued in relaychat's outbox, not yet accepted by Twilio
    PENDING = "pending"
    #: some of its parts were accepted by Twilio, not all yet
    SENDING = "sending"
    #: every part accepted by Twilio, none reported sent yet
    QUEUED = "queued"
    #: handed to the carrier
    SENT = "sent"
    #: every part reached the phone
    DELIVERED = "delivered"
    #: the carrier could not deliver a part (Twilio's `ErrorCode` says why)
    UNDELIVERED = "undelivered"
    #: Twilio refused a part, or relaychat gave up sending it
    FAILED = "failed"


class McpServerState(StrEnum):
    """How an MCP server stands in this process (`GET /api/agents/tools`); not stored."""

    #: started and listed its tools
    RUNNING = "running"
    #: being started (or restarted after a crash); its tools are not known yet
    STARTING = "starting"
    #: could not be started or reached; `reason` says why, and it is retried after a pause
    FAILED = "failed"
    #: configured but left out of this process: a variable its configuration uses is not set
    DISABLED = "disabled"


class OutboxStatus(StrEnum):
    """Where a callback (a webhook delivery or a channel's reply) stands (`outbox.status`)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    #: given up on after its last attempt
    FAILED = "failed"
    #: never to be sent: its channel was deleted
    CANCELLED = "cancelled"


class IdempotencyState(StrEnum):
    """An `Idempotency-Key`'s record (`idempotency_records.state`)."""

    #: the first request is still being processed
    IN_FLIGHT = "in_flight"
    #: the first request finished; its answer is replayed
    DONE = "done"


class KeyStatus(StrEnum):
    """An API key's standing, derived from its revocation and expiry times."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class StopReason(StrEnum):
    """Why a reply stopped before its model finished: its `finish_reason`, and the `error`
    of its `message.failed` callback."""

    #: its owner aborted it
    ABORTED = "aborted"
    #: its worker was shutting down
    SHUTDOWN = "shutdown"
    #: its worker went quiet and the recovery sweep took it over
    INTERRUPTED = "interrupted"


class MessageRole(StrEnum):
    """Who wrote a message (`messages.role`); a model is shown `external` as `user`."""

    #: the conversation's owner
    USER = "user"
    #: the model or agent answering
    ASSISTANT = "assistant"
    #: a system posting with an API key, or a channel's sender (SMS, WhatsApp)
    EXTERNAL = "external"
    #: results of tool calls a caller ran itself (the OpenAI-compatible API's `role: tool`)
    TOOL = "tool"


class UserRole(StrEnum):
    """What a user may do (`users.role`, and the `role` claim of its access tokens)."""

    #: may read every key's audit and list every key
    ADMIN = "admin"
    USER = "user"


class AgentVisibility(StrEnum):
    """Who may use an agent (`agents.visibility`)."""

    #: its owner (and admins)
    PRIVATE = "private"
    #: every user
    PUBLIC = "public"


class OutboxKind(StrEnum):
    """What an outbox item delivers (`outbox.kind`): the sender that takes it."""

    #: an event to a webhook endpoint
    WEBHOOK = "webhook"
    #: a reply sent through a Twilio channel (SMS, WhatsApp)
    TWILIO = "twilio"


class AuditOutcome(StrEnum):
    """What became of an external request (`audit_events.outcome`, the `outcome` label of
    `relaychat_external_messages`).

    The column stays a plain string: the audit keeps whatever it was given, cut to fit.
    """

    ACCEPTED = "accepted"
    #: an `Idempotency-Key` seen before: the first answer was replayed
    REPLAYED = "replayed"
    #: refused (authentication, permission, limits, validation); `reason` holds the code
    REFUSED = "refused"


class RecurrenceKind(StrEnum):
    """How a schedule says when it runs (`schedules.kind`)."""

    #: once, at one local time
    AT = "at"
    #: an RFC 5545 recurrence rule (`FREQ=DAILY;BYHOUR=8`)
    RRULE = "rrule"
    #: a five-field cron expression
    CRON = "cron"


class CatchUp(StrEnum):
    """What a schedule does with the occurrences it missed while no scheduler ran."""

    #: none of them runs; the run history records that they were skipped
    SKIP = "skip"
    #: the latest of them runs once
    ONCE = "once"


class ScheduleRunStatus(StrEnum):
    """Where one occurrence of a schedule stands (`schedule_runs.status`)."""

    #: due, waiting for a scheduler to claim it
    PENDING = "pending"
    #: claimed by a scheduler under a lease
    RUNNING = "running"
    #: its prompt was stored (and its reply started, when the conversation answers)
    POSTED = "posted"
    #: it could not post; `error` says why
    FAILED = "failed"
    #: missed while no scheduler ran, and not run (catch_up `skip`)
    SKIPPED = "skipped"


class RunTrigger(StrEnum):
    """What made a schedule run (`schedule_runs.trigger`)."""

    #: its time came
    SCHEDULE = "schedule"
    #: the latest occurrence missed during downtime, run late (catch_up `once`)
    CATCH_UP = "catch_up"
    #: its owner asked for a run now (POST /api/schedules/{id}/run)
    MANUAL = "manual"
