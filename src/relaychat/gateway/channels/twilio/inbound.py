"""Twilio's inbound SMS/WhatsApp webhook: a message accepted as an external message.

The message is mapped onto an external message (`message.py`) and accepted through the
same pipeline, permissions and owner resolution as an API key's
(`relaychat.domain.intake.external.accept`), the channel acting as a key
(`_principal`). The answer is an empty TwiML `<Response/>` at once; the reply goes out
later through the outbox (Messages API). Twilio's retries of a message carry the same
`MessageSid`, which is the idempotency key: a retry replays the empty answer and stores
nothing. Each sender has one thread per channel, which must belong to the user the channel
names (see domain.telephony.channel_threads).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access import idempotency
from relaychat.domain.access.keys import KeyPermissions, KeyPrincipal
from relaychat.domain.accounts import users
from relaychat.domain.intake import external
from relaychat.domain.telephony import channel_threads, channels
from relaychat.errors import AppError, ConversationExists
from relaychat.gateway.channels.twilio.message import external_message
from relaychat.gateway.channels.twilio.webhook import Form, authenticate, refused
from relaychat.gateway.request_audit import RequestAudit, finish
from relaychat.services import Services
from relaychat.storage.models import Channel

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


async def handle_inbound(request: Request, services: Services, channel_id: str) -> Response:
    """Serve one inbound message; every outcome leaves an audit row."""
    audit = RequestAudit.of(request)
    try:
        form = await authenticate(request, services, channel_id, audit, channels.webhook_url)
        assert audit.channel is not None
        if not audit.channel.enabled:
            raise channels.ChannelDisabled("this channel does not take messages now")
        return await _accept(services, audit.channel, form, audit)
    except AppError as exc:
        return await refused(request, services, audit, exc)


def _principal(channel: Channel) -> KeyPrincipal:
    """The channel as a key: it may open its senders' threads and nothing else."""
    return KeyPrincipal(
        key_id=None,
        key_ref=channels.channel_ref(channel.id),
        name=f"twilio:{channel.name}",
        owner_id=channel.owner_user_id,
        # Routing by phone acts for whichever user the number belongs to.
        system=channel.owner_user_id is None,
        permissions=KeyPermissions(
            allowed_conversations=channel_threads.thread_patterns(channel.id),
            can_create_conversations=True,
            can_respond=True,
            respond_default=True,
            default_endpoint=channel.endpoint,
            default_model=channel.model,
            default_agent_id=channel.agent_id,
            can_name_user=channel.owner_user_id is not None,
        ),
        channel_tag=channel_threads.channel_tag(channel.id),
    )


async def _accept(
    services: Services, channel: Channel, form: Form, audit: RequestAudit
) -> Response:
    message = external_message(form, channel, services.settings.phone_default_region)
    twilio = message.metadata["twilio"]
    conversation_id = channel_threads.thread_id(
        channel.id, message.metadata["source"], message.metadata["phoneNumber"]
    )
    audit.conversation_id = conversation_id
    key_ref = channels.channel_ref(channel.id)
    fingerprint = idempotency.request_fingerprint(
        conversation_id, [twilio["from"], twilio["to"], form.get("Body"), twilio["media"]]
    )
    sid = twilio["message_sid"]
    replay = await idempotency.begin(services.sessionmaker, key_ref, sid, fingerprint)
    if replay is not None:
        finish(services, audit, status=200, outcome="replayed")
        response = twiml()
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        accepted = await _accept_once(services, channel, conversation_id, message, audit)
    except BaseException:
        await idempotency.release(services.sessionmaker, key_ref, sid)
        raise
    audit.user_id = accepted.owner_id
    audit.strategy = audit.strategy or accepted.strategy
    audit.message_id = accepted.message.message_id
    await idempotency.finish(
        services.sessionmaker,
        key_ref,
        sid,
        200,
        {"message_id": accepted.message.message_id, "conversation_id": conversation_id},
    )
    finish(services, audit, status=200, outcome="accepted")
    return twiml()


async def _accept_once(
    services: Services,
    channel: Channel,
    conversation_id: str,
    message: external.ExternalMessage,
    audit: RequestAudit,
) -> external.Accepted:
    principal = _principal(channel)
    twilio = message.metadata["twilio"]

    async def attempt(session: AsyncSession) -> external.Accepted:
        sender = await channels.inbound_sender(
            session,
            channel,
            conversation_id,
            message.metadata["phoneNumber"],
            twilio.get("profile_name"),
        )
        if sender.provisioned:
            audit.strategy = "provisioned"
        return await external.accept(
            session,
            services.chat,
            principal,
            sender.caller,
            conversation_id,
            external.ExternalMessage(
                content=message.content,
                metadata=message.metadata,
                user=sender.user,
                respond=sender.respond,
            ),
            phone_region=services.settings.phone_default_region,
        )

    try:
        # The same sender's previous message may have created the thread (or the user) a
        # moment ago: the second attempt joins it.
        return await external.accept_joining(
            services.sessionmaker, attempt, retry_on=(users.UserRaced,)
        )
    except (ConversationExists, users.UserRaced):
        raise ConversationExists("try again") from None
