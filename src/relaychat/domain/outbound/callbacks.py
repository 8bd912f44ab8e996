"""What a change owes the outside world: webhook events and channel replies, queued in the
change's own transaction (see relaychat.domain.outbound.outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.outbound import webhooks
from relaychat.domain.telephony import channel_replies
from relaychat.resources import ConversationOut, MessageView
from relaychat.statuses import MessageRole
from relaychat.storage.models import Conversation, Message
from relaychat.storage.tables import MESSAGES

# Messages that arrive in a conversation; the assistant's own are reported when they end.
_INCOMING_ROLES = frozenset({MessageRole.USER, MessageRole.EXTERNAL})


async def conversation_created(
    session: AsyncSession, conversation: Conversation, api_key_id: str | None
) -> None:
    await webhooks.emit(
        session,
        "conversation.created",
        user_id=conversation.user_id,
        api_key_id=api_key_id,
        data=lambda: {
            "conversation_id": conversation.id,
            "conversation": ConversationOut.model_validate(conversation).model_dump(mode="json"),
        },
    )


async def message_created(
    session: AsyncSession, conversation: Conversation, message: MessageView
) -> None:
    if message.role not in _INCOMING_ROLES:
        return
    await webhooks.emit(
        session,
        "message.created",
        user_id=conversation.user_id,
        api_key_id=message.api_key_id,
        data=lambda: {
            "conversation_id": conversation.id,
            "message": message.model_dump(mode="json"),
        },
    )


@dataclass(frozen=True, slots=True)
class RequestRef:
    """What a reply's callbacks read of the message it answers."""

    id: str
    api_key_id: str | None
    meta: dict[str, Any]


_REQUEST = select(MESSAGES.c.id, MESSAGES.c.api_key_id, MESSAGES.c.metadata).where(
    MESSAGES.c.id == bindparam("message_id")
)


async def request_of(session: AsyncSession, message_id: str | None) -> RequestRef | None:
    """The message a reply answers (its parent), as its callbacks need it."""
    if message_id is None:
        return None
    row = (await session.execute(_REQUEST, {"message_id": message_id})).first()
    return RequestRef(row.id, row.api_key_id, row.metadata or {}) if row is not None else None


async def reply_ended(
    session: AsyncSession,
    reply: MessageView,
    request: RequestRef | None,
    *,
    user_id: str,
    generation_id: str,
    error_code: str | None = None,
    detail: str | None = None,
) -> MessageView:
    """A reply completed (no error) or failed, was aborted or interrupted (an error code).

    Returns the reply as it now stands: a channel's reply records its pending delivery.
    """

    def data() -> dict[str, Any]:
        body = {
            "conversation_id": reply.conversation_id,
            "message": reply.model_dump(mode="json"),
            "in_reply_to": request.id if request else None,
            "generation_id": generation_id,
        }
        if error_code is not None:
            body.update(error=error_code, detail=detail)
        return body

    await webhooks.emit(
        session,
        "message.failed" if error_code else "message.completed",
        user_id=user_id,
        api_key_id=request.api_key_id if request else None,
        data=data,
    )
    if error_code is None and request is not None and request.meta.get("channel_id"):
        # Rare (a text message's reply), so entities here: the delivery is written on the
        # reply, whose row the caller has just updated in this transaction.
        request_row = await session.get(Message, request.id)
        reply_row = await session.get(Message, reply.message_id)
        if request_row is not None and reply_row is not None:
            await channel_replies.enqueue_reply(session, request_row, reply_row)
            return MessageView.model_validate(reply_row)
    return reply
