"""Accepting an external message: permissions, owner, conversation, store, broadcast, reply.

The HTTP front (relaychat.gateway) authenticates the key, applies rate limits and
idempotency, and shapes the answer; everything a key may or may not do is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain import keys
from relaychat.domain.chat import ChatEngine, Sent, send_message
from relaychat.domain.conversations import publish_created, stage_conversation
from relaychat.domain.keys import KeyPrincipal
from relaychat.domain.resolution import Caller, Resolved, resolve_owner
from relaychat.errors import ConversationNotFound, ValidationFailed
from relaychat.storage.models import Conversation


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
    sent: Sent
    conversation: Conversation
    resolved: Resolved
    created_conversation: bool
    # The event id of the message's `message.created`: a stream resumed from it sees the reply.
    event_id: str | None


def thread_id(metadata: dict[str, Any], phone: str | None) -> str:
    """The conversation id for a sender: the same source and number, the same conversation."""
    source = str(metadata.get("source") or "external").strip().lower() or "external"
    sender = phone or str(metadata.get("sender") or "").strip()
    if not sender:
        raise ValidationFailed(
            "name the sender with metadata.phoneNumber (or metadata.sender)",
            field="metadata.phoneNumber",
        )
    cleaned = "".join(ch for ch in f"{source}-{sender}" if ch.isalnum() or ch in "._:@+-")
    return cleaned[:128]


async def accept(
    session: AsyncSession,
    engine: ChatEngine,
    principal: KeyPrincipal,
    caller: Caller,
    conversation_id: str,
    message: ExternalMessage,
    *,
    phone_region: str,
) -> Accepted:
    """Run the checks, then store and broadcast the message and start the reply if asked."""
    perms = principal.permissions
    keys.check_conversation(perms, conversation_id)
    keys.check_metadata(perms, message.metadata)
    conversation = await session.get(Conversation, conversation_id)
    resolved = await resolve_owner(
        session,
        caller,
        conversation=conversation,
        explicit_user=message.user,
        metadata=message.metadata,
        phone_region=phone_region,
    )
    if conversation is not None and conversation.user_id != resolved.user.id:
        # An explicit user (or a token) that is not the conversation's owner.
        raise ConversationNotFound()

    respond = perms.respond_default if message.respond is None else message.respond
    if respond:
        keys.check_respond(perms)
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
        )
        created = True
    else:
        _check_target(
            perms, conversation.endpoint, agent_override or conversation.agent_id, respond
        )

    sent = await send_message(
        session,
        engine,
        conversation,
        role="external",
        sender=str(message.metadata.get("source") or principal.name),
        content=message.content,
        parent_message_id=message.parent_message_id,
        metadata=message.metadata,
        respond=respond,
        api_key_id=principal.key_ref,
        model_override=model_override,
        agent_override=agent_override,
        # The new conversation goes out before the message, as it was committed with it.
        before_publish=(lambda: publish_created(engine.bus, conversation)) if created else None,
    )
    return Accepted(sent, conversation, resolved, created, sent.event_id)


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
