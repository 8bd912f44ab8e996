"""Tables. Messages are rows in a tree (parent_message_id), never a JSON blob per conversation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from relaychat.statuses import (
    AgentVisibility,
    CatchUp,
    GenerationStatus,
    IdempotencyState,
    MessageRole,
    MessageStatus,
    OutboxStatus,
    RecurrenceKind,
    RunTrigger,
    ScheduleRunStatus,
    UserRole,
)
from relaychat.storage.types import JsonType, UTCDateTime, str_enum, utcnow

# Deterministic constraint names so Alembic migrations work the same on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonType}  # noqa: RUF012


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(str_enum(UserRole, 16), default=UserRole.USER)
    phone_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set while an admin has disabled the account: no sign-in, token or API key of it works.
    disabled_at: Mapped[datetime | None]
    # Access tokens and refresh links issued under an older epoch no longer count: ending
    # sessions (sign out everywhere, a password change, disabling) moves it on.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The one session (refresh family) the last move of the epoch spared: a password's changer.
    kept_session_id: Mapped[str | None] = mapped_column(String(36))


class RefreshToken(Base):
    """One link of a rotating refresh-token chain; reuse of a used link revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of a 256-bit random secret: high entropy makes a slow hash unnecessary.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # The user's session epoch when this link was issued (see User.session_epoch).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # The conversation list: one user's, by archive flag, newest first.
        Index("ix_conversations_user_list", "user_id", "archived", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(500))
    endpoint: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    model_parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    system_prompt: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # External messages the owner has not read yet (the sidebar's badge); counted in the
    # transaction that stores each one, zeroed by POST /api/convos/{id}/read.
    unseen_external: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Listing a conversation in creation order, and finding its latest message.
        Index("ix_messages_conversation_order", "conversation_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_message_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    role: Mapped[MessageRole] = mapped_column(str_enum(MessageRole, 16))
    sender: Mapped[str | None] = mapped_column(String(200))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    text: Mapped[str] = mapped_column(Text, default="")
    endpoint: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    # The counts are relaychat's estimate: the provider reported none.
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[MessageStatus] = mapped_column(
        str_enum(MessageStatus, 16), default=MessageStatus.COMPLETE
    )
    error: Mapped[str | None] = mapped_column(Text)
    # `metadata` is reserved by SQLAlchemy's declarative base, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    api_key_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReplyUsage(Base):
    """The tokens one reply cost, kept apart from the message: deleting a conversation
    does not undo what its replies spent (budgets and `GET /api/usage` read this)."""

    __tablename__ = "reply_usage"
    __table_args__ = (
        # A person's usage over a time range (also serves the foreign key).
        Index("ix_reply_usage_user_time", "user_id", "created_at"),
        # Everyone's, for admins.
        Index("ix_reply_usage_time", "created_at"),
        # A key's budget: today's sum read from the index alone, one range per request.
        Index("ix_reply_usage_key_time", "api_key_id", "created_at", "total_tokens"),
    )

    # The reply message: one usage row per reply.
    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    generation_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    # The key whose message asked for the reply: its id, or `env:…` for a system key.
    api_key_id: Mapped[str | None] = mapped_column(String(80))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    estimated: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    """One run of a model answering a message; the lease (worker, heartbeat) finds orphans."""

    __tablename__ = "generations"
    __table_args__ = (
        # The recovery sweep: running generations whose heartbeat went quiet.
        Index("ix_generations_status_heartbeat", "status", "heartbeat_at"),
        # GET /api/stats: replies ended per time bucket and their time to first token, for
        # everyone and for one owner, read from the index alone (the second also serves
        # the foreign key and every lookup by user).
        Index(
            "ix_generations_status_finished",
            "status",
            "finished_at",
            "started_at",
            "first_token_at",
        ),
        Index(
            "ix_generations_user_status_finished",
            "user_id",
            "status",
            "finished_at",
            "started_at",
            "first_token_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    request_message_id: Mapped[str | None] = mapped_column(String(36))
    response_message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[GenerationStatus] = mapped_column(
        str_enum(GenerationStatus, 16), default=GenerationStatus.RUNNING
    )
    worker_id: Mapped[str] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_token_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    # The X-Request-Id of the request that asked for the reply (a scheduled post: its
    # run's id): the runner logs under it, in whichever process ends the generation.
    request_id: Mapped[str | None] = mapped_column(String(128))


class Agent(Base):
    """Instructions, a model and tools that answer in conversations with endpoint "agents"."""

    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_visibility", "visibility", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    instructions: Mapped[str | None] = mapped_column(Text)
    endpoint: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    model_parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tools: Mapped[list[str]] = mapped_column(JsonType, default=list)
    mcp_servers: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # private: its owner only; public: every user of the instance may use (not edit) it.
    visibility: Mapped[AgentVisibility] = mapped_column(
        str_enum(AgentVisibility, 16), default=AgentVisibility.PRIVATE
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentMemory(Base):
    """What an agent remembered for one user (the `remember` / `recall` tools)."""

    __tablename__ = "agent_memories"
    __table_args__ = (
        UniqueConstraint("user_id", "agent_id", "key", name="uq_agent_memories_user_agent_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """A key external systems post with; only a hash of its secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The public part of the key (`rck_<lookup>_<secret>`), for finding the row in one read.
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # A system key may post into any user's conversation; only admins create them.
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_hash: Mapped[str] = mapped_column(String(64))
    # After a rotation the old secret keeps working until `previous_valid_until`.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None]
    permissions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class IdempotencyRecord(Base):
    """The first answer to an `Idempotency-Key`, replayed to repeats for a day."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("key_ref", "idempotency_key", name="uq_idempotency_key_ref_key"),
        Index("ix_idempotency_expires", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Which API key the record belongs to (a managed key's id, or `env:` and a digest).
    key_ref: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[IdempotencyState] = mapped_column(
        str_enum(IdempotencyState, 16), default=IdempotencyState.IN_FLIGHT
    )
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuditEvent(Base):
    """One external request, accepted or refused: who, from where, what, and the outcome."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_key_time", "api_key_id", "created_at"),
        # Also GET /api/stats: everyone's requests per time bucket, from the index alone.
        Index("ix_audit_time", "created_at"),
        # GET /api/stats: requests per outcome and time bucket, refusals by reason and a
        # sample of latencies, for everyone and for one key owner, read from the index
        # alone (the second also serves every lookup by key owner).
        Index("ix_audit_outcome_time", "outcome", "created_at", "reason", "latency_ms"),
        Index(
            "ix_audit_owner_outcome_time",
            "key_owner_id",
            "outcome",
            "created_at",
            "reason",
            "latency_ms",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    api_key_id: Mapped[str | None] = mapped_column(String(80))
    # The owner of the key, so a user's audit listing never needs a join.
    key_owner_id: Mapped[str | None] = mapped_column(String(36))
    client_address: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(36))
    strategy: Mapped[str | None] = mapped_column(String(32))
    # An `AuditOutcome`, kept a plain string: the audit keeps whatever it was given.
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    message_id: Mapped[str | None] = mapped_column(String(36))
    # The X-Request-Id of the request (http/request_ids.py): its log lines carry it too.
    request_id: Mapped[str | None] = mapped_column(String(128))


class AuditHour(Base):
    """How many audit rows of one hour had one owner, outcome and reason: kept by every
    writer of audit rows in the same transaction (storage/audit_hours.py), so the
    dashboard counts a week from a few thousand of these instead of a million rows."""

    __tablename__ = "audit_hours"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    # '' for none: a primary key column cannot be NULL, and NULLs would not conflict.
    key_owner_id: Mapped[str] = mapped_column(String(36), primary_key=True, server_default="")
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(120), primary_key=True, server_default="")
    n: Mapped[int] = mapped_column(BigInteger)


class WebhookEndpoint(Base):
    """A URL that receives signed event callbacks for a user's conversations, or a key's."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Set: only events caused by this key's messages. Unset: every event of the user.
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    # The `whsec_…` signing secret, encrypted: it must be read back to sign each delivery.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JsonType, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    # When the current run of failed attempts began; cleared by the next success.
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxItem(Base):
    """A callback to deliver, written in the transaction of the change that causes it.

    `kind` picks the sender (`webhook`: a signed POST to an endpoint; `twilio`: a reply
    sent through a channel). The delivery worker claims due rows by moving
    `next_attempt_at` forward by a lease, so a worker that dies mid-attempt only delays
    the row, never loses it.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_target_time", "target_id", "created_at"),
        # GET /api/stats: deliveries per status, for everyone and for one owner (the
        # second also serves the foreign key).
        Index("ix_outbox_time", "created_at", "kind", "status"),
        Index("ix_outbox_user_time", "user_id", "created_at", "kind", "status"),
    )

    # For webhooks this is the `webhook-id`, the same on every attempt.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # An `OutboxKind`, kept a plain string: a row of a kind no sender knows is still read,
    # and given up on by the worker rather than failing its whole batch.
    kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    # The exact bytes to send (webhooks sign them; a retry sends the very same body).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[OutboxStatus] = mapped_column(
        str_enum(OutboxStatus, 16), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The X-Request-Id of the request whose change owes this callback (or the id its
    # generation carries): the delivery worker logs every attempt under it.
    request_id: Mapped[str | None] = mapped_column(String(128))


class OutboxAttempt(Base):
    """One try at delivering an outbox item, for the deliveries log."""

    __tablename__ = "outbox_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    response_body: Mapped[str | None] = mapped_column(Text)


class Channel(Base):
    """An inbound channel such as a Twilio number: its credentials and where messages go."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    # Who made the channel and may change it.
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Who owns the conversations it opens; unset with `resolve_by_phone`.
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    resolve_by_phone: Mapped[bool] = mapped_column(Boolean, default=False)
    # Type-specific, non-secret settings (Twilio: account_sid, public_url, api_base_url, …).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The type's secret (Twilio: the auth token), encrypted; or named by environment variable.
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    secret_env: Mapped[str | None] = mapped_column(String(100))
    endpoint: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Share(Base):
    """A read-only link to a snapshot of a conversation's branch (`GET /s/{token}`).

    Only a hash of the link's token is kept, like an API key's secret: the link is shown
    once, and what the table holds opens nothing. Deleting the conversation (or its owner)
    deletes its shares and their snapshots with it.
    """

    __tablename__ = "shares"
    __table_args__ = (
        # The owner's shares, newest first (and one conversation's: filtered after).
        Index("ix_shares_user_created", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of a 256-bit random token: high entropy makes a slow hash unnecessary.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, so the owner can tell links apart in the list.
    token_hint: Mapped[str] = mapped_column(String(8))
    # The conversation's title when it was shared (the page shows the snapshot's).
    title: Mapped[str | None] = mapped_column(String(500))
    # The last message of the shared branch.
    message_id: Mapped[str] = mapped_column(String(36))
    message_count: Mapped[int] = mapped_column(Integer)
    include_phone_numbers: Mapped[bool] = mapped_column(Boolean, default=False)
    include_key_names: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SharedMessage(Base):
    """One message of a share's snapshot, copied when the link was made: later messages,
    edits and deletions never reach the shared page. Sender details the sharer did not opt
    into (phone numbers, key names) are left out of the copy, not hidden at display."""

    __tablename__ = "shared_messages"

    share_id: Mapped[str] = mapped_column(
        ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[MessageRole] = mapped_column(str_enum(MessageRole, 16))
    # Who said it, as the page shows it (resolved at share time).
    author: Mapped[str] = mapped_column(String(200))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    text: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[MessageStatus] = mapped_column(str_enum(MessageStatus, 16))
    # An external message's `metadata.source`; its phone number and key name only by opt-in.
    source: Mapped[str | None] = mapped_column(String(200))
    phone_number: Mapped[str | None] = mapped_column(String(64))
    key_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Schedule(Base):
    """At these times, post this prompt into this conversation (or a new one) as its owner.

    `next_run_at` is the next occurrence not yet handed to a run (None: nothing more to
    run); the scheduler that moves it on inserts the occurrence's `ScheduleRun` in the
    same transaction, so an occurrence becomes a run once whichever scheduler sees it.
    """

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "enabled", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # Not a foreign key: a conversation deleted fails the next run, which says so, rather
    # than the schedule vanishing without a word.
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    # With `agent_id`: a new conversation each run, or one conversation reused.
    new_conversation: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt: Mapped[str] = mapped_column(Text)
    kind: Mapped[RecurrenceKind] = mapped_column(str_enum(RecurrenceKind, 8))
    # The RRULE, the cron expression, or the local ISO time of an `at` schedule.
    rule: Mapped[str] = mapped_column(String(1000))
    timezone: Mapped[str] = mapped_column(String(64))
    # DTSTART of an rrule: when the schedule was made (or its rule last changed).
    anchor_at: Mapped[datetime]
    until: Mapped[datetime | None]
    max_runs: Mapped[int | None] = mapped_column(Integer)
    catch_up: Mapped[CatchUp] = mapped_column(str_enum(CatchUp, 8), default=CatchUp.SKIP)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    next_run_at: Mapped[datetime | None]
    # Occurrences handed to runs (skipped ones not counted): what `max_runs` bounds.
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduleRun(Base):
    """One occurrence of a schedule: claimed under a lease, posted once.

    Unique per (schedule, occurrence): however many schedulers see an occurrence, it is
    one row. A scheduler claims it by moving `lease_until` forward (as the outbox does);
    one that dies mid-run leaves it to be claimed again once the lease lapses, and the
    run turns `posted` in the very transaction that stores its message, so a retry finds
    it posted and posts nothing.
    """

    __tablename__ = "schedule_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "occurrence_at"),
        Index("ix_schedule_runs_due", "status", "lease_until"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    occurrence_at: Mapped[datetime]
    trigger: Mapped[RunTrigger] = mapped_column(str_enum(RunTrigger, 16))
    status: Mapped[ScheduleRunStatus] = mapped_column(
        str_enum(ScheduleRunStatus, 16), default=ScheduleRunStatus.PENDING
    )
    # Occurrences missed during downtime that this row stands for (catch-up), besides itself.
    missed: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a scheduler may claim it: its time, then the end of a claim's lease.
    lease_until: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(String(128))
    message_id: Mapped[str | None] = mapped_column(String(36))
    reply_message_id: Mapped[str | None] = mapped_column(String(36))
    generation_id: Mapped[str | None] = mapped_column(String(36))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
