"""Conversations: create, list with a cursor, read, change and delete, always by owner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from relaychat.domain.agent.agents import AGENTS_ENDPOINT, AgentNotFound, get_visible_agent
from relaychat.domain.cursors import decode_cursor, encode_cursor
from relaychat.domain.ids import new_id
from relaychat.domain.merge_patch import merge_patch
from relaychat.domain.messaging import conversation_ids
from relaychat.domain.outbound import callbacks
from relaychat.domain.publishing import publish_after_commit
from relaychat.errors import (
    ConversationExists,
    ConversationNotFound,
    UserGone,
    ValidationFailed,
)
from relaychat.realtime.bus import EventBus
from relaychat.realtime.events import ConversationCreated, ConversationDeleted, ConversationUpdated
from relaychat.resources import ConversationOut
from relaychat.storage.models import Conversation, User
from relaychat.storage.tables import CONVERSATIONS
from relaychat.storage.types import utcnow

# Fields a client may set on create and change later.
EDITABLE_FIELDS = frozenset(
    {"title", "endpoint", "model", "agent_id", "model_parameters", "system_prompt", "archived"}
)


class EndpointCatalog(Protocol):
    """What checking a conversation's endpoint and model needs from the endpoint registry."""

    def names(self) -> list[str]: ...

    async def models(self, name: str) -> list[str]: ...


@dataclass(frozen=True)
class ConversationPage:
    conversations: Sequence[Conversation]
    next_cursor: str | None


async def create_conversation(
    session: AsyncSession,
    bus: EventBus,
    user_id: str,
    *,
    conversation_id: str | None,
    fields: dict[str, Any],
) -> Conversation:
    """Store a new conversation for the user; a client-chosen id must be free."""
    conversation = await stage_conversation(
        session, user_id, conversation_id=conversation_id, fields=fields
    )
    publish_created(session, bus, conversation)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise ConversationExists(field="conversation_id") from exc
    return conversation


async def stage_conversation(
    session: AsyncSession,
    user_id: str,
    *,
    conversation_id: str | None,
    fields: dict[str, Any],
    api_key_id: str | None = None,
    system: bool = False,
    channel_tag: str | None = None,
    fresh: bool = False,
) -> Conversation:
    """Add a new conversation (and its callbacks) to the session's transaction (the caller
    queues `publish_created`, then commits); `api_key_id`: the key that opened it, `system`:
    a system key did, `channel_tag`: a channel did (see conversation_ids.check_claim);
    `fresh`: `conversation_id` was made by `new_id` for this write and never shown to
    anyone, so it is not looked up (a collision would still be refused by the insert)."""
    cid = new_id() if conversation_id is None else conversation_ids.check_id(conversation_id)
    # Before the existence check: a reserved id says nothing about whether it is taken.
    await conversation_ids.check_claim(
        session, cid, user_id, system=system, channel_tag=channel_tag
    )
    if not fresh and await session.scalar(select(Conversation.id).where(Conversation.id == cid)):
        # Ids are global (external senders address conversations by id alone), so a
        # taken id is a conflict whoever owns it.
        raise ConversationExists(field="conversation_id")
    now = utcnow()
    values = {
        "id": cid,
        "user_id": user_id,
        "created_at": now,
        "updated_at": now,
        **{k: v for k, v in fields.items() if k in EDITABLE_FIELDS and v is not None},
    }
    # One statement rather than the session's unit of work (a call of the OpenAI-compatible
    # API opens a conversation per call), the row coming back as written, defaults and all;
    # its entity is put in the session as if loaded.
    try:
        row = (await session.execute(_INSERT_RETURNING, values)).one()
    except IntegrityError as exc:
        await session.rollback()
        raise ConversationExists(field="conversation_id") from exc
    conversation = Conversation(**row._asdict())
    make_transient_to_detached(conversation)
    session.add(conversation)
    await callbacks.conversation_created(session, conversation, api_key_id)
    return conversation


_INSERT_RETURNING = insert(CONVERSATIONS).returning(*CONVERSATIONS.c)


async def check_target(
    session: AsyncSession,
    user: User,
    catalog: EndpointCatalog,
    changes: dict[str, Any],
    conversation: Conversation | None = None,
) -> None:
    """Refuse, when it is written, an agent the user may not use (as if it did not exist), an
    endpoint that is not configured, or a model the endpoint does not offer; rather than
    storing what fails at the next message. Only what `changes` sets is checked."""
    merged = {
        k: changes[k] if k in changes else getattr(conversation, k, None)
        for k in ("endpoint", "model", "agent_id")
    }
    endpoint, model, agent_id = merged["endpoint"], merged["model"], merged["agent_id"]
    agent = None
    if agent_id and ("agent_id" in changes or (model and endpoint == AGENTS_ENDPOINT)):
        try:
            agent = await get_visible_agent(session, user, agent_id)
        except AgentNotFound as exc:
            exc.fields["field"] = "agent_id"
            raise
    names = catalog.names()
    if "endpoint" in changes and endpoint and endpoint not in (*names, AGENTS_ENDPOINT):
        raise ValidationFailed(
            f"no endpoint {endpoint!r} is configured; configured: {', '.join(names) or 'none'}",
            field="endpoint",
        )
    if not model or not ({"endpoint", "model", "agent_id"} & changes.keys()):
        return
    # An agent's conversation runs on the agent's endpoint.
    target = agent.endpoint if endpoint == AGENTS_ENDPOINT and agent else endpoint
    offered = await catalog.models(target) if target in names else []
    if offered and model not in offered:
        raise ValidationFailed(
            f"endpoint {target!r} offers no model {model!r}; models: {', '.join(offered)}",
            field="model",
        )


def publish_created(session: AsyncSession, bus: EventBus, conversation: Conversation) -> None:
    """Tell the owner's tabs about a new conversation once the session commits it."""
    publish_after_commit(
        session,
        bus,
        conversation.user_id,
        lambda: ConversationCreated(
            conversation_id=conversation.id,
            conversation=ConversationOut.model_validate(conversation),
        ),
    )


def _publish_updated(session: AsyncSession, bus: EventBus, conversation: Conversation) -> None:
    publish_after_commit(
        session,
        bus,
        conversation.user_id,
        lambda: ConversationUpdated(
            conversation_id=conversation.id,
            conversation=ConversationOut.model_validate(conversation),
        ),
    )


async def get_sender_conversation(
    session: AsyncSession, user_id: str, conversation_id: str
) -> tuple[Conversation, str]:
    """The user's conversation and the user's name, as a person's message needs them, in
    one query. A user who no longer exists is refused as their token is (`UserGone`),
    before a missing conversation, as reading the user first would do."""
    if len(conversation_id) <= conversation_ids.MAX_LENGTH:
        found = (
            await session.execute(
                select(Conversation, User.name)
                .join(User, User.id == Conversation.user_id)
                .where(Conversation.id == conversation_id, Conversation.user_id == user_id)
            )
        ).first()
        if found is not None:
            return found[0], found[1]
    if await session.get(User, user_id) is None:
        raise UserGone()
    raise ConversationNotFound()


async def get_owned_conversation(
    session: AsyncSession, user_id: str, conversation_id: str
) -> Conversation:
    """The user's conversation; another user's is reported as missing, never as forbidden,
    and so is an id no conversation can have (nothing is looked up for it)."""
    if len(conversation_id) > conversation_ids.MAX_LENGTH:
        raise ConversationNotFound()
    conversation = await session.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.user_id == user_id
        )
    )
    if conversation is None:
        raise ConversationNotFound()
    return conversation


async def list_conversations(
    session: AsyncSession, user_id: str, *, limit: int, cursor: str | None, archived: bool
) -> ConversationPage:
    """One page of the user's conversations, most recently updated first."""
    query = select(Conversation).where(
        Conversation.user_id == user_id, Conversation.archived.is_(archived)
    )
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Conversation.updated_at < at,
                and_(Conversation.updated_at == at, Conversation.id < last_id),
            )
        )
    query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
    rows = (await session.scalars(query)).all()
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if more and page else None
    return ConversationPage(page, encode_cursor(last.updated_at, last.id) if last else None)


async def update_conversation(
    session: AsyncSession, bus: EventBus, conversation: Conversation, changes: dict[str, Any]
) -> Conversation:
    """Apply the given field changes (`model_parameters` merge-patched) and bump
    `updated_at`."""
    for key, value in changes.items():
        if key not in EDITABLE_FIELDS:
            continue
        if key in {"model_parameters", "archived"} and value is None:
            raise ValidationFailed(f"{key} cannot be null", field=key)
        if key == "model_parameters":  # a nested object: merge-patched (RFC 7396)
            value = merge_patch(conversation.model_parameters or {}, value)
        setattr(conversation, key, value)
    conversation.updated_at = utcnow()
    _publish_updated(session, bus, conversation)
    await session.commit()
    return conversation


async def mark_read(
    session: AsyncSession, bus: EventBus, conversation: Conversation
) -> Conversation:
    """The owner has seen its external messages: clear the badge in every tab.

    Reading is not activity, so `updated_at` (the sidebar's order) stays as it is.
    """
    if not conversation.unseen_external:
        return conversation
    conversation.unseen_external = 0
    _publish_updated(session, bus, conversation)
    await session.commit()
    return conversation


async def delete_conversation(
    session: AsyncSession, bus: EventBus, conversation: Conversation
) -> None:
    """Delete the conversation and, by cascade, its messages."""
    await session.delete(conversation)
    publish_after_commit(
        session, bus, conversation.user_id, ConversationDeleted(conversation_id=conversation.id)
    )
    await session.commit()
