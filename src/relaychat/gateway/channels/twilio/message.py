"""An inbound Twilio form read as an external message, its metadata holding what a reply needs."""

from __future__ import annotations

import re
from typing import Any

from relaychat.domain.accounts.phones import normalize_phone
from relaychat.domain.intake import external
from relaychat.domain.telephony import channels
from relaychat.gateway.channels.twilio.webhook import Form, TwilioFormInvalid
from relaychat.storage.models import Channel

# Twilio sends at most 10 media per message; more fields than a message has are refused.
MAX_MEDIA = 10
_MESSAGE_SID = re.compile(r"^(SM|MM|SS)[0-9a-fA-F]{32}$")


def _field(form: Form, name: str, *, required: bool = False, limit: int = 200) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise TwilioFormInvalid(f"{name} is required", field=name)
    return text[:limit]


def external_message(form: Form, channel: Channel, region: str) -> external.ExternalMessage:
    """The Twilio form as an external message, its metadata holding what a reply needs."""
    sid = _field(form, "MessageSid") or _field(form, "SmsMessageSid", required=True)
    if not _MESSAGE_SID.fullmatch(sid):
        raise TwilioFormInvalid("MessageSid is not a Twilio message sid", field="MessageSid")
    sender = _field(form, "From", required=True)
    recipient = _field(form, "To", required=True)
    source = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
    phone = normalize_phone(sender, region)
    body = form.get("Body")
    text = body if isinstance(body, str) else ""
    try:
        count = min(int(_field(form, "NumMedia") or 0), MAX_MEDIA)
    except ValueError as exc:
        raise TwilioFormInvalid("NumMedia is not a number", field="NumMedia") from exc
    media = [
        {"url": _field(form, f"MediaUrl{i}", limit=2000), "content_type": ctype}
        for i in range(count)
        if _field(form, f"MediaUrl{i}")
        for ctype in [_field(form, f"MediaContentType{i}", limit=100)]
    ]
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    for item in media:
        if item["content_type"].startswith("image/"):
            content.append({"type": "image_url", "image_url": {"url": item["url"]}})
        else:  # a model can't take audio or a PDF as a part; it can be told of it
            content.append(
                {"type": "text", "text": f"[attachment {item['content_type']}: {item['url']}]"}
            )
    if not content:
        raise TwilioFormInvalid("the message has neither Body nor media", field="Body")
    twilio = {
        "message_sid": sid,
        "account_sid": _field(form, "AccountSid"),
        "from": sender,
        "to": recipient,
        "num_media": count,
        "media": media,
        "num_segments": _field(form, "NumSegments") or None,
        "profile_name": _field(form, "ProfileName") or None,
        "wa_id": _field(form, "WaId") or None,
    }
    metadata = {
        "source": source,
        "phoneNumber": phone,
        "channel": channels.TWILIO,
        "channel_id": channel.id,
        "twilio": {k: v for k, v in twilio.items() if v is not None},
    }
    return external.ExternalMessage(content=content, metadata=metadata)
