"""A channel's message log: what came in through it and what went out, newest first.

Nothing is stored for it: an inbound message is the `external` message a channel posted
(`metadata.channel_id`, `metadata.twilio`), an outbound one the reply queued to go back
through it (`metadata.delivery`, kept up to date by the sender and Twilio's status
callbacks, see channel_replies). Both live in the channel's threads, whose ids end with the
channel's tag (channel_threads), so the threads are found first and their messages read by
the conversation index. A reply that was never queued (it failed, or was aborted) sent
nothing and is not listed.

Whose: the channel must be one the user manages (`channels.get_channel`), and a user who is
not an admin sees only the messages of conversations they own, even if an admin pointed
their channel at someone else's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.cursors import decode_cursor, encode_cursor
from relaychat.domain.telephony.channel_replies import reported_state
from relaychat.domain.telephony.channel_threads import SOURCES, channel_tag
from relaychat.statuses import DeliveryState, MessageRole
from relaychat.storage.models import Channel, Conversation, Message, User

PREVIEW_CHARS = 200


class DeliveryPartOut(BaseModel):
    """One SMS/WhatsApp message of a reply (a long one is sent in parts)."""

    index: int | None = Field(description="Its place in the reply; null until Twilio accepted it.")
    sid: str = Field(description="Twilio's message sid.")
    status: str | None = Field(description="Twilio's latest status: queued, sent, delivered, …")
    error_code: str | None = Field(description="Twilio's `ErrorCode` for it, if any.")


class DeliveryOut(BaseModel):
    """How an outbound message's delivery stands, as Twilio reported it."""

    state: DeliveryState
    error_code: str | None = Field(
        description="The provider's error code: of the send relaychat gave up on, else the "
        "`ErrorCode` of the first part that failed or was not delivered."
    )
    error_message: str | None = Field(description="Twilio's message for a send it refused.")
    parts: list[DeliveryPartOut]
    updated_at: datetime | None


class ChannelMessageOut(BaseModel):
    """A message that came in through a channel, or went out through it."""

    message_id: str
    conversation_id: str
    direction: Literal["inbound", "outbound"]
    created_at: datetime
    source: Literal["sms", "whatsapp"] | None
    from_number: str | None = Field(description="As Twilio writes it: `+1…` or `whatsapp:+1…`.")
    to_number: str | None
    text: str = Field(description=f"The text, cut at {PREVIEW_CHARS} characters.")
    text_truncated: bool
    twilio_sid: str | None = Field(description="An inbound message's `MessageSid`.")
    delivery: DeliveryOut | None = Field(description="An outbound message's; null inbound.")


@dataclass(frozen=True)
class ChannelMessagePage:
    messages: list[ChannelMessageOut]
    next_cursor: str | None


async def list_channel_messages(
    session: AsyncSession, user: User, channel: Channel, *, limit: int, cursor: str | None
) -> ChannelMessagePage:
    """One page of the channel's messages, newest first (`channel` already checked as the
    user's, see the module docstring)."""
    tag = channel_tag(channel.id)
    threads = select(Conversation.id).where(
        or_(*(Conversation.id.like(f"{source}-+%.{tag}") for source in SOURCES))
    )
    if not is_admin(user):
        threads = threads.where(Conversation.user_id == user.id)
    # An outbound message's sender is the number the message it answers was written to.
    request = aliased(Message)
    query = (
        select(
            Message.id,
            Message.conversation_id,
            Message.role,
            # One character more than shown says whether there is more.
            func.substr(Message.text, 1, PREVIEW_CHARS + 1),
            Message.meta,
            Message.created_at,
            request.meta[("twilio", "to")].as_string(),
        )
        .outerjoin(request, request.id == Message.parent_message_id)
        .where(
            Message.conversation_id.in_(threads),
            # Not every message of a thread went through the channel: its owner writes there,
            # a system key may post there; the channel's name its id in their metadata.
            or_(
                and_(
                    Message.role == MessageRole.EXTERNAL,
                    Message.meta["channel_id"].as_string() == channel.id,
                ),
                and_(
                    Message.role == MessageRole.ASSISTANT,
                    Message.meta[("delivery", "channel_id")].as_string() == channel.id,
                ),
            ),
        )
    )
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(Message.created_at < at, and_(Message.created_at == at, Message.id < last_id))
        )
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    page = [_message(*row) for row in rows[:limit]]
    more = len(rows) > limit and bool(page)
    last = page[-1] if more else None
    next_cursor = encode_cursor(last.created_at, last.message_id) if last else None
    return ChannelMessagePage(page, next_cursor)


def _message(
    message_id: str,
    conversation_id: str,
    role: MessageRole,
    text: str | None,
    meta: dict[str, Any] | None,
    created_at: datetime,
    answered_to: str | None,
) -> ChannelMessageOut:
    meta = meta or {}
    text = text or ""
    preview = {"text": text[:PREVIEW_CHARS], "text_truncated": len(text) > PREVIEW_CHARS}
    common = {"message_id": message_id, "conversation_id": conversation_id, **preview}
    if role == MessageRole.EXTERNAL:
        twilio = meta.get("twilio") or {}
        return ChannelMessageOut(
            **common,
            direction="inbound",
            created_at=created_at,
            source=_source(meta.get("source")),
            from_number=twilio.get("from"),
            to_number=twilio.get("to"),
            twilio_sid=twilio.get("message_sid"),
            delivery=None,
        )
    delivery = meta.get("delivery") or {}
    to = delivery.get("to")
    return ChannelMessageOut(
        **common,
        direction="outbound",
        created_at=created_at,
        source="whatsapp" if str(to or "").startswith("whatsapp:") else "sms",
        from_number=answered_to,
        to_number=to,
        twilio_sid=None,
        delivery=_delivery(delivery),
    )


def _source(value: Any) -> Literal["sms", "whatsapp"] | None:
    return "sms" if value == "sms" else "whatsapp" if value == "whatsapp" else None


def _delivery(delivery: dict[str, Any]) -> DeliveryOut:
    parts = [
        DeliveryPartOut(
            index=part.get("index"),
            sid=str(part.get("sid") or ""),
            status=part.get("status"),
            error_code=_code(part.get("error_code")),
        )
        for part in delivery.get("parts") or []
    ]
    error = delivery.get("error") or {}
    failed = [p for p in parts if p.error_code and p.status in {"failed", "undelivered"}]
    code = _code(error.get("code")) or (failed[0].error_code if failed else None)
    return DeliveryOut(
        state=reported_state(delivery),
        error_code=code,
        error_message=error.get("message") or None,
        parts=parts,
        updated_at=_latest([delivery, *(delivery.get("parts") or [])]),
    )


def _code(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _latest(records: list[dict[str, Any]]) -> datetime | None:
    """When the delivery last changed: the sender writes `updated_at` on the delivery, a
    status callback on the part it reports on."""
    moments = [m for m in (_moment(r.get("updated_at")) for r in records) if m is not None]
    return max(moments, default=None)
