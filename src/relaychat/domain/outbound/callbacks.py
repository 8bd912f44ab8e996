"""What a change owes the outside world: webhook events and channel replies, queued in the
change's own transaction (see relaychat.domain.outbound.outbox)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.outbound import webhooks
from relaychat.domain.telephony import channel_replies
from relaychat.resources import ConversationOut, MessageView
from relaychat.statuses import MessageRole
from relaychat.storage.models import Conversation, Message

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
        data={
            "conversation_id": conversation.id,
            "conversation": ConversationOut.model_validate(conversation).model_dump(mode="json"),
        },
    )


async def message_created(
    session: AsyncSession, conversation: Conversation, message: Message
) -> None:
    if message.role not in _INCOMING_ROLES:
        return
    await webhooks.emit(
        session,
        "message.created",
        user_id=conversation.user_id,
        api_key_id=message.api_key_id,
        data={
            "conversation_id": conversation.id,
            "message": MessageView.model_validate(message).model_dump(mode="json"),
        },
    )


async def reply_ended(
    session: AsyncSession,
    reply: Message,
    *,
    user_id: str,
    generation_id: str,
    error_code: str | None = None,
    detail: str | None = None,
) -> None:
    """A reply completed (no error) or failed, was aborted or interrupted (an error code)."""
    # The message a reply answers is its parent (the generation's request message).
    request = (
        await session.get(Message, reply.parent_message_id) if reply.parent_message_id else None
    )
    data = {
        "conversation_id": reply.conversation_id,
        "message": MessageView.model_validate(reply).model_dump(mode="json"),
        "in_reply_to": request.id if request else None,
        "generation_id": generation_id,
    }
    if error_code is not None:
        data.update(error=error_code, detail=detail)
    await webhooks.emit(
        session,
        "message.failed" if error_code else "message.completed",
        user_id=user_id,
        api_key_id=request.api_key_id if request else None,
        data=data,
    )
    if error_code is None and request is not None and request.meta.get("channel_id"):
        await channel_replies.enqueue_reply(session, request, reply)
