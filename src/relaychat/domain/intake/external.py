"""Accepting an external message: permissions, owner, conversation, store, broadcast, reply.

The HTTP front (relaychat.gateway) authenticates the key, applies rate limits and
idempotency, and shapes the answer; everything a key may or may not do is decided here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.domain.access import keys
from relaychat.domain.access.keys import KeyPrincipal
from relaychat.domain.accounts.standing import StandingCache
from relaychat.domain.answering.generations import StartedGeneration
from relaychat.domain.intake.group_commit import GroupCommitWriter, Pending, Stale
from relaychat.domain.intake.resolution import Caller, OwnerUnresolved, resolve_owner
from relaychat.domain.limits import check_metadata
from relaychat.domain.messaging import conversation_ids
from relaychat.domain.messaging.chat import BeforeCommit, ChatEngine, checked_text, send_message
from relaychat.domain.messaging.conversations import publish_created, stage_conversation
from relaychat.domain.usage.budget import check_budget
from relaychat.errors import (
    ConversationExists,
    ConversationNotFound,
    UserDisabled,
    ValidationFailed,
)
from relaychat.resources import MessageView
from relaychat.statuses import MessageRole
from relaychat.storage.models import Conversation, User


@dataclass(frozen=True)
class ExternalMessage:
    """An external message as the gateway parsed it."""

    content: list[dict[str, Any]]
    metadata: dict[str, Any]
    respond: bool | None = None
    parent_message_id: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class Accepted:
    # The stored message as clients see it (events, webhooks, the gateway's answer).
    message: MessageView
    started: StartedGeneration | None
    conversation_id: str
    owner_id: str
    # How the owner was found (relaychat.domain.intake.resolution).
    strategy: str
    created_conversation: bool
    # The event id of the message's `message.created`: a stream resumed from it sees the reply.
    event_id: str | None


class OwnerDisabled(UserDisabled):
    """An admin disabled the user the message is for. A user's own key is refused before
    this (`KeyOwnerDisabled`); a system key or a channel would otherwise keep a disabled
    account's conversations filling, and its replies (SMS ones too) going out."""

    title = "The conversation's owner is disabled"


def _check_enabled(disabled: bool) -> None:
    if disabled:
        raise OwnerDisabled("the user this message is for is disabled; nothing was stored")


MAX_SOURCE_LENGTH = 100
SENDER_LABEL_LENGTH = 200  # messages.sender


def source_of(metadata: dict[str, Any]) -> str | None:
    """`metadata.source`, checked: it labels the message and names by-sender threads."""
    raw = metadata.get("source")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_SOURCE_LENGTH:
        raise ValidationFailed(
            f"metadata.source must be a string of 1 to {MAX_SOURCE_LENGTH} characters",
            field="metadata.source",
        )
    return raw.strip()


def thread_id(metadata: dict[str, Any], phone: str | None) -> str:
    """The conversation id for a sender: the same source and number, the same conversation."""
    source = (source_of(metadata) or "external").lower()
    sender = phone or str(metadata.get("sender") or "").strip()
    if not sender:
        raise ValidationFailed(
            "name the sender with metadata.phoneNumber (or metadata.sender)",
            field="metadata.phoneNumber",
        )
    cleaned = "".join(ch for ch in f"{source}-{sender}" if ch.isalnum() or ch in "._:@+-")
    if len(cleaned) > conversation_ids.MAX_LENGTH:
        # Cutting it short would merge the threads of senders that share a prefix.
        raise ValidationFailed(
            f"metadata.source and metadata.sender make a conversation id longer than "
            f"{conversation_ids.MAX_LENGTH} characters",
            field="metadata.sender",
        )
    return cleaned


async def accept(
    session: AsyncSession,
    engine: ChatEngine,
    principal: KeyPrincipal,
    caller: Caller,
    conversation_id: str,
    message: ExternalMessage,
    *,
    phone_region: str,
    by_sender: bool = False,
    before_commit: BeforeCommit | None = None,
) -> Accepted:
    """Run the checks, then store and broadcast the message and start the reply if asked.

    `by_sender`: the gateway chose the conversation from the sender (threading); it is used
    only if it is held by the user the sender resolves to, found without looking at it.
    `before_commit`: the caller's own writes, committed with the message (send_message).
    """
    conversation_ids.check_id(conversation_id)
    perms = principal.permissions
    keys.check_conversation(perms, conversation_id)
    keys.check_metadata(perms, message.metadata)
    source = source_of(message.metadata)
    if not caller.system and caller.key_owner_id:
        # Before any lookup: whether a thread exists, or whose number it names, stays unsaid.
        await conversation_ids.check_claim(
            session, conversation_id, caller.key_owner_id, channel_tag=principal.channel_tag
        )
    # With its owner, in one query: resolving the owner then finds the user in the session.
    found = (
        await session.execute(
            select(Conversation, User)
            .join(User, User.id == Conversation.user_id)
            .where(Conversation.id == conversation_id)
        )
    ).first()
    conversation = found[0] if found is not None else None
    if conversation is None and not by_sender and not perms.can_create_conversations:
        raise ConversationNotFound(
            f"conversation {conversation_id} does not exist, and this key may not create "
            "conversations (permission can_create_conversations)"
        )
    try:
        resolved = await resolve_owner(
            session,
            caller,
            conversation=None if by_sender else conversation,
            explicit_user=message.user,
            metadata=message.metadata,
            phone_region=phone_region,
        )
    except OwnerUnresolved as exc:
        if conversation is not None or by_sender or message.user:
            raise
        raise ConversationNotFound(
            f"conversation {conversation_id} does not exist; to have it created, name its "
            "owner (`user`, a user's `metadata.phoneNumber` or access token)",
            tried=exc.fields.get("tried"),
        ) from None
    _check_enabled(resolved.user.disabled_at is not None)
    if conversation is not None:
        if conversation.user_id != resolved.user.id:
            if by_sender:
                raise conversation_ids.ConversationThreadTaken(
                    f"conversation {conversation_id} is held by another user; "
                    "the message was not stored"
                )
            # An explicit user (or a token) that is not the conversation's owner.
            raise ConversationNotFound()
        await conversation_ids.check_holder(session, conversation)

    respond = perms.respond_default if message.respond is None else message.respond
    if respond:
        keys.check_respond(perms)
        # Before anything is staged: a refused request stores nothing.
        await check_budget(session, principal.key_ref, perms)
    agent_override = _string(message.metadata, "agent_id")
    model_override = _string(message.metadata, "model")
    created = False
    if conversation is None:
        keys.check_create(perms)
        fields = {
            "endpoint": perms.default_endpoint,
            "model": perms.default_model,
            "agent_id": perms.default_agent_id,
        }
        if fields["agent_id"] and not fields["endpoint"]:
            fields["endpoint"] = "agents"
        _check_target(perms, fields["endpoint"], agent_override or fields["agent_id"], respond)
        # Staged, not committed: if anything below refuses, nothing was written.
        conversation = await stage_conversation(
            session,
            resolved.user.id,
            conversation_id=conversation_id,
            fields=fields,
            api_key_id=principal.key_id,
            system=principal.system,
            channel_tag=principal.channel_tag,
        )
        # Queued first: the new conversation goes out before the message committed with it.
        publish_created(session, engine.bus, conversation)
        created = True
    else:
        _check_target(
            perms, conversation.endpoint, agent_override or conversation.agent_id, respond
        )

    sent = await send_message(
        session,
        engine,
        conversation,
        role=MessageRole.EXTERNAL,
        sender=(source or principal.name)[:SENDER_LABEL_LENGTH],
        content=message.content,
        parent_message_id=message.parent_message_id,
        metadata=message.metadata,
        respond=respond,
        api_key_id=principal.key_ref,
        model_override=model_override,
        agent_override=agent_override,
        before_commit=before_commit,
    )
    return Accepted(
        sent.message,
        sent.started,
        conversation.id,
        resolved.user.id,
        resolved.strategy,
        created,
        sent.event_id,
    )


class ConversationOwners:
    """Who owns each conversation id, as last read: the one fact the grouped path reads.

    An owner never changes while its conversation exists; a conversation deleted (and
    perhaps made again by someone else) is caught by the group-commit writer, which
    writes only where id and owner still match, and then forgotten here.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._owners: dict[str, str] = {}

    async def get(
        self, sessionmaker: async_sessionmaker[AsyncSession], conversation_id: str
    ) -> str | None:
        owner = self._owners.get(conversation_id)
        if owner is None:
            async with sessionmaker() as session:
                owner = await session.scalar(
                    select(Conversation.user_id).where(Conversation.id == conversation_id)
                )
            if owner is not None:
                if len(self._owners) >= self.size:
                    self._owners.clear()  # crude, but bounded; refilled on the next reads
                self._owners[conversation_id] = owner
        return owner

    def forget(self, conversation_id: str) -> None:
        self._owners.pop(conversation_id, None)


async def accept_grouped(
    sessionmaker: async_sessionmaker[AsyncSession],
    writer: GroupCommitWriter,
    owners: ConversationOwners,
    principal: KeyPrincipal,
    caller: Caller,
    conversation_id: str,
    message: ExternalMessage,
    *,
    standing: StandingCache,
    audit: Callable[[str, str, str], dict[str, Any]] | None = None,
) -> Accepted | None:
    """The common case, written by the group-commit writer: a message into an existing
    conversation, owned by whom the key may reach, with no reply, no named parent and
    nothing else to resolve. Checks are `accept`'s, in its order, with the same errors.
    None when the message needs `accept` (anything else, or the conversation changed).
    `standing` tells whether the owner is disabled, from a cache every change evicts.
    """
    if (
        message.user
        or message.parent_message_id
        or caller.token_user_id
        or caller.session_user_id
        or conversation_ids.named_phone(conversation_id) is not None
    ):
        return None
    perms = principal.permissions
    respond = perms.respond_default if message.respond is None else message.respond
    if respond:
        return None
    conversation_ids.check_id(conversation_id)
    keys.check_conversation(perms, conversation_id)
    keys.check_metadata(perms, message.metadata)
    source = source_of(message.metadata)
    owner_id = await owners.get(sessionmaker, conversation_id)
    if owner_id is None:
        return None  # creating it, or saying it does not exist, is `accept`'s to do
    if not caller.system and owner_id != caller.key_owner_id:
        raise ConversationNotFound()  # as resolve_owner: nothing about someone else's
    if caller.system:  # a user's key is its owner's, refused already if they are disabled
        owner = await standing.get(owner_id)
        if owner is None:
            return None  # gone meanwhile: `accept` says what became of the conversation
        _check_enabled(owner.disabled)
    # Then what send_message checks.
    text = checked_text(message.content)
    check_metadata(message.metadata)
    pending = Pending(
        conversation_id=conversation_id,
        owner_id=owner_id,
        role=MessageRole.EXTERNAL,
        sender=(source or principal.name)[:SENDER_LABEL_LENGTH],
        content=message.content,
        text=text,
        metadata=message.metadata,
        api_key_id=principal.key_ref,
        unseen=True,
        audit=audit,
    )
    try:
        written = await writer.write(pending)
    except Stale:
        owners.forget(conversation_id)
        return None
    return Accepted(
        written.message,
        None,
        conversation_id,
        owner_id,
        "conversation_owner",
        False,
        written.event_id,
    )


# One try of a front's accept in the session it is given (see accept_joining).
AcceptAttempt = Callable[[AsyncSession], Awaitable[Accepted]]


async def accept_joining(
    sessionmaker: async_sessionmaker[AsyncSession],
    attempt: AcceptAttempt,
    *,
    retry_on: tuple[type[Exception], ...] = (),
) -> Accepted:
    """`attempt` (which ends in `accept`) in a session of its own, run once more in a fresh
    session if it raises `ConversationExists` (or one of `retry_on`).

    Two messages of one sender may both find no conversation and both create it; the
    loser's commit fails. Its second attempt finds the winner's conversation and joins it.
    A second failure is raised.
    """
    retryable: tuple[type[Exception], ...] = (ConversationExists, *retry_on)
    for attempt_number in range(2):
        async with sessionmaker() as session:
            try:
                return await attempt(session)
            except retryable:
                if attempt_number:
                    raise
    raise AssertionError("unreachable")


def _check_target(perms: Any, endpoint: str | None, agent_id: str | None, respond: bool) -> None:
    if not respond:
        return
    if endpoint:
        keys.check_endpoint(perms, endpoint)
    if agent_id:
        keys.check_agent(perms, agent_id)


def _string(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None
