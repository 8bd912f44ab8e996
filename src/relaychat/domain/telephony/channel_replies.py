"""A channel reply's way out: split to fit Twilio's Body limit, and its delivery state.

The delivery state lives in the reply's `meta["delivery"]`:

    {"channel": "twilio", "channel_id": …, "to": "whatsapp:+1555…", "part_count": 2,
     "state": "pending|sending|queued|sent|delivered|failed",
     "parts": [{"index": 0, "sid": "SM…", "status": "delivered", "error_code": null}, …],
     "error": {"code": 21211, "message": …, "status": 400}}   # when sending gave up

`enqueue_reply` is called in the transaction that finalizes a reply to a channel's
message and queues one `twilio` outbox item holding the reply split into parts. The sender
adds each part Twilio accepted (`record_sent`), Twilio's status callbacks move a part's
status forward (`record_status`); both read-modify-write under a lock.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.outbound import outbox
from relaychat.errors import MessageNotFound
from relaychat.statuses import DeliveryState, MessageStatus
from relaychat.storage.models import Channel, Conversation, Message
from relaychat.storage.types import utcnow

# The channel type, and the outbox kind of its replies.
TWILIO = "twilio"

# Twilio's Messages API refuses a Body over 1600 characters (error 21617/21658), for SMS and
# WhatsApp alike, and counts characters outside the BMP (most emoji) twice: UTF-16 units.
MAX_BODY_UNITS = 1600


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The longest prefix of `text` (in characters) that is at most `limit` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


_LAST_SPACE = re.compile(r"\s(?=\S*$)")


def split_body(text: str, limit: int = MAX_BODY_UNITS) -> list[str]:
    """`text` in parts of at most `limit` UTF-16 units, cut at whitespace where possible."""
    rest = text.strip()
    parts: list[str] = []
    while _units(rest) > limit:
        cut = _fit(rest, limit)
        space = _LAST_SPACE.search(rest[: cut + 1])
        # A word longer than a whole part is cut where the limit falls.
        end = space.start() if space and space.start() > 0 else cut
        parts.append(rest[:end].rstrip())
        rest = rest[end:].lstrip()
    if rest:
        parts.append(rest)
    return parts


# Twilio's message statuses in the order they happen; a late callback never moves back.
_STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}
_FAILED = frozenset({"failed", "undelivered"})


def overall_state(delivery: dict[str, Any]) -> str:
    """The reply's delivery state from its parts: failed, delivered, sent, queued, sending."""
    if delivery.get("error"):
        return "failed"
    parts = delivery.get("parts") or []
    known = [p for p in parts if p.get("index") is not None]
    if any(p.get("status") in _FAILED for p in parts):
        return "failed"
    if len(known) < int(delivery.get("part_count") or 0):
        return "sending" if known else str(delivery.get("state") or "pending")
    ranks = [_STATUS_RANK.get(str(p.get("status")), 1) for p in known]
    lowest = min(ranks, default=1)
    return "delivered" if lowest >= 4 else "sent" if lowest == 3 else "queued"


def reported_state(delivery: dict[str, Any]) -> DeliveryState:
    """`overall_state` for people: a reply `failed` only because the carrier could not deliver
    a part (no part refused, relaychat did not give up) is `undelivered`."""
    state = DeliveryState(overall_state(delivery))
    statuses = {p.get("status") for p in delivery.get("parts") or []}
    if state == DeliveryState.FAILED and not delivery.get("error") and "failed" not in statuses:
        return DeliveryState.UNDELIVERED
    return state


async def locked_reply(session: AsyncSession, message_id: str) -> Message | None:
    """The reply, locked for a read-modify-write of its delivery state.

    The UPDATE comes first because it locks on both databases: the row on PostgreSQL, the
    whole database for writing on SQLite (whose SELECT … FOR UPDATE locks nothing).
    """
    touched = await session.execute(
        update(Message).where(Message.id == message_id).values(updated_at=utcnow())
    )
    if touched.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return await session.scalar(
        select(Message)
        .where(Message.id == message_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _merge_part(delivery: dict[str, Any], sid: str, **fields: Any) -> None:
    parts: list[dict[str, Any]] = delivery.setdefault("parts", [])
    part = next((p for p in parts if p.get("sid") == sid), None)
    if part is None:
        parts.append({"sid": sid, "index": None, **fields})
        return
    new_status = fields.pop("status", None)
    old_rank = _STATUS_RANK.get(str(part.get("status")), -1)
    if new_status and _STATUS_RANK.get(new_status, -1) >= old_rank:
        part["status"] = new_status
    part.update({k: v for k, v in fields.items() if v is not None})


async def record_sent(
    session: AsyncSession,
    message_id: str,
    sent: list[dict[str, Any]],
    *,
    error: dict[str, Any] | None,
    now_iso: str,
) -> None:
    """Note the parts Twilio accepted (and a final error) on the reply's delivery state."""
    reply = await locked_reply(session, message_id)
    if reply is None:
        return
    delivery = json.loads(json.dumps((reply.meta or {}).get("delivery") or {}))
    for item in sent:
        _merge_part(delivery, item["sid"], index=item["index"], status=item.get("status"))
    delivery["parts"].sort(key=lambda p: (p.get("index") is None, p.get("index") or 0))
    if error is not None:
        delivery["error"] = error
    delivery["state"] = overall_state(delivery)
    delivery["updated_at"] = now_iso
    reply.meta = {**(reply.meta or {}), "delivery": delivery}


async def record_status(
    session: AsyncSession,
    channel_id: str,
    message_id: str,
    *,
    sid: str,
    status: str,
    error_code: str | None,
) -> dict[str, Any]:
    """Apply one of Twilio's status callbacks to the reply's delivery state and commit."""
    reply = await locked_reply(session, message_id)
    delivery: dict[str, Any] = json.loads(
        json.dumps(((reply.meta or {}) if reply else {}).get("delivery") or {})
    )
    # Only the channel that sent a reply may report on it.
    if reply is None or delivery.get("channel_id") != channel_id:
        await session.rollback()
        raise MessageNotFound()
    _merge_part(
        delivery,
        sid,
        status=status.lower(),
        error_code=error_code,
        updated_at=utcnow().isoformat(),
    )
    delivery["state"] = overall_state(delivery)
    reply.meta = {**(reply.meta or {}), "delivery": delivery}
    await session.commit()
    return delivery


async def enqueue_reply(session: AsyncSession, request: Message, reply: Message) -> None:
    """Queue the reply to a message that came in through a channel.

    Called in the transaction that finalizes the reply. A reply that did not complete, or
    has no text, sends nothing (the sender hears nothing rather than half an answer); so
    does a channel deleted or disabled meanwhile.
    """
    channel_id = request.meta.get("channel_id") if request.meta else None
    twilio = (request.meta or {}).get("twilio") or {}
    if not channel_id or not twilio.get("from") or not twilio.get("to"):
        return
    channel = await session.get(Channel, channel_id)
    if channel is None or channel.type != TWILIO or not channel.enabled:
        return
    parts = split_body(reply.text or "")
    if reply.status != MessageStatus.COMPLETE or not parts:
        return
    conversation = await session.get(Conversation, reply.conversation_id)
    if conversation is None:
        return
    payload = {
        "channel_id": channel.id,
        "message_id": reply.id,
        "conversation_id": reply.conversation_id,
        # Answer from the number that was written to, to the number that wrote (with the
        # `whatsapp:` prefix both carry on WhatsApp).
        "to": twilio["from"],
        "from": twilio["to"],
        "in_reply_to": twilio.get("message_sid"),
        "parts": parts,
        "sent": [],
    }
    outbox.enqueue(
        session,
        kind=TWILIO,
        target_id=channel.id,
        user_id=conversation.user_id,
        event_type="message.completed",
        payload=json.dumps(payload),
    )
    reply.meta = {
        **(reply.meta or {}),
        "delivery": {
            "channel": TWILIO,
            "channel_id": channel.id,
            "to": twilio["from"],
            "state": "pending",
            "part_count": len(parts),
            "parts": [],
        },
    }
