"""Channels: Twilio numbers whose messages enter conversations through the gateway pipeline.

Who may do what. A channel's manager (`user_id`, whoever created it) may read, change and
delete it; admins may reach every channel; anyone else gets 404. A non-admin's channel
always opens conversations owned by that user: naming another `owner`, `resolve_by_phone`
(every sender lands with the user whose phone number it is), a non-default
`api_base_url` (where the server sends the auth token) and `auth_token_env` (a server
environment variable, which must start with `TWILIO_`) are admin-only.

Replies go out through the transactional outbox: `channel_replies.enqueue_reply` queues one
`twilio` item per reply. Each sender has one conversation per channel (see channel_threads).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.crypto import SecretBox
from relaychat.domain.access.keys import AdminRequired
from relaychat.domain.accounts.users import find_user_by_phone, is_admin, provision_phone_user
from relaychat.domain.agent.agents import get_visible_agent
from relaychat.domain.ids import new_id
from relaychat.domain.intake.resolution import Caller, find_user
from relaychat.domain.telephony import channel_threads
from relaychat.domain.telephony.channel_replies import TWILIO as TWILIO
from relaychat.errors import (
    ErrorCode,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    UserNotFound,
    ValidationFailed,
)
from relaychat.statuses import OutboxStatus
from relaychat.storage.models import Channel, Conversation, OutboxItem, User
from relaychat.storage.types import utcnow

logger = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twilio.com"
WEBHOOK_PATH = "/api/channels/twilio/"

# -- errors ----------------------------------------------------------------------------


class ChannelNotFound(NotFound):
    code = ErrorCode.CHANNEL_NOT_FOUND
    title = "Channel not found"


class ChannelDisabled(Forbidden):
    code = ErrorCode.CHANNEL_DISABLED
    title = "The channel is disabled"


class ChannelSecretMissing(ServiceUnavailable):
    code = ErrorCode.CHANNEL_SECRET_MISSING
    title = "The channel's auth token is not available"


class SenderUnknown(Forbidden):
    code = ErrorCode.CHANNEL_SENDER_UNKNOWN
    title = "No user has the sender's phone number"


# -- settings --------------------------------------------------------------------------

# Only variables meant for Twilio: the token is an HMAC key and goes to Twilio's API.
ENV_PREFIX = "TWILIO_"
EnvName = Annotated[str, Field(pattern=r"^TWILIO_[A-Za-z0-9_]+$", max_length=100)]


def _http_url(value: str, field: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{field} must be an http(s) URL")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{field} may not carry credentials or a fragment")
    return value.strip()


class _ChannelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("public_url", check_fields=False)
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "public_url")

    @field_validator("api_base_url", check_fields=False)
    @classmethod
    def _api_base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "api_base_url").rstrip("/")


class TwilioChannelIn(_ChannelFields):
    """A new Twilio channel."""

    type: Literal["twilio"] = "twilio"
    name: str = Field(min_length=1, max_length=200)
    account_sid: str = Field(pattern=r"^AC[0-9a-f]{32}$", description="`AC` and 32 hex digits.")
    auth_token: str | None = Field(None, min_length=1, max_length=200, repr=False)
    auth_token_env: EnvName | None = Field(
        None, description="Read the token from this variable, `TWILIO_…` (admins)."
    )
    public_url: str = Field(
        max_length=2000,
        description="The webhook URL Twilio signs, or the server's base URL as Twilio sees it.",
    )
    owner: str | None = Field(None, max_length=320, description="Email or id; default: you.")
    resolve_by_phone: bool = False
    provision_unknown: bool = False
    endpoint: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=200)
    agent_id: str | None = Field(None, max_length=64)
    api_base_url: str | None = Field(None, max_length=2000)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> TwilioChannelIn:
        if (self.auth_token is None) == (self.auth_token_env is None):
            raise ValueError("give exactly one of auth_token and auth_token_env")
        if self.owner and self.resolve_by_phone:
            raise ValueError("give either owner or resolve_by_phone, not both")
        if self.provision_unknown and not self.resolve_by_phone:
            raise ValueError("provision_unknown needs resolve_by_phone")
        return self


class TwilioChannelPatch(_ChannelFields):
    """Changes to a channel; absent fields stay, `null` clears the optional ones."""

    name: str | None = Field(None, min_length=1, max_length=200)
    account_sid: str | None = Field(None, pattern=r"^AC[0-9a-f]{32}$")
    auth_token: str | None = Field(None, min_length=1, max_length=200, repr=False)
    auth_token_env: EnvName | None = None
    public_url: str | None = Field(None, max_length=2000)
    owner: str | None = Field(None, max_length=320)
    resolve_by_phone: bool | None = None
    provision_unknown: bool | None = None
    endpoint: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=200)
    agent_id: str | None = Field(None, max_length=64)
    api_base_url: str | None = Field(None, max_length=2000)
    enabled: bool | None = None


# -- management ------------------------------------------------------------------------


async def create_channel(
    session: AsyncSession,
    actor: User,
    spec: TwilioChannelIn,
    secrets: SecretBox,
    *,
    endpoints: Collection[str] | None = None,
) -> Channel:
    """Store a channel managed by `actor`; checks who may own its conversations."""
    now = utcnow()
    channel = Channel(
        id=new_id(),
        type=TWILIO,
        name=spec.name.strip(),
        user_id=actor.id,
        resolve_by_phone=spec.resolve_by_phone,
        config={},
        enabled=spec.enabled,
        created_at=now,
        updated_at=now,
    )
    changes = spec.model_dump(exclude={"type", "name", "enabled", "resolve_by_phone"})
    if not spec.resolve_by_phone:
        changes["owner"] = spec.owner or actor.id
    await _apply(session, actor, channel, changes, secrets, endpoints)
    session.add(channel)
    await session.commit()
    return channel


async def update_channel(
    session: AsyncSession,
    actor: User,
    channel: Channel,
    patch: TwilioChannelPatch,
    secrets: SecretBox,
    *,
    endpoints: Collection[str] | None = None,
) -> Channel:
    """Apply the fields set in `patch`; the rules of `create_channel` hold afterwards."""
    changes = patch.model_dump(include=patch.model_fields_set)
    for flag in ("name", "account_sid", "public_url", "enabled", "resolve_by_phone"):
        if flag in changes and changes[flag] is None:
            raise ValidationFailed(f"{flag} cannot be null", field=flag)
    if changes.get("auth_token") and changes.get("auth_token_env"):
        raise ValidationFailed("give one of auth_token and auth_token_env", field="auth_token")
    if changes.get("owner") and changes.get("resolve_by_phone"):
        raise ValidationFailed("give either owner or resolve_by_phone", field="owner")
    if "name" in changes:
        channel.name = changes.pop("name").strip()
    if "enabled" in changes:
        channel.enabled = changes.pop("enabled")
    if changes.get("resolve_by_phone") is False and "owner" not in changes:
        changes["owner"] = actor.id
    if changes.get("owner"):
        changes["resolve_by_phone"] = False
    if "resolve_by_phone" in changes:
        channel.resolve_by_phone = changes.pop("resolve_by_phone")
    await _apply(session, actor, channel, changes, secrets, endpoints)
    if not channel.resolve_by_phone and channel.owner_user_id is None:
        raise ValidationFailed("a channel needs an owner or resolve_by_phone", field="owner")
    if channel.secret_encrypted is None and channel.secret_env is None:
        raise ValidationFailed("a channel needs auth_token or auth_token_env", field="auth_token")
    channel.updated_at = utcnow()
    await session.commit()
    return channel


async def _apply(
    session: AsyncSession,
    actor: User,
    channel: Channel,
    changes: dict[str, Any],
    secrets: SecretBox,
    endpoints: Collection[str] | None,
) -> None:
    """Check and copy settings onto `channel` (nothing is committed here)."""
    admin = is_admin(actor)
    config = dict(channel.config or {})
    for key in ("account_sid", "public_url"):
        if changes.get(key) is not None:
            config[key] = changes[key]
    if "api_base_url" in changes:
        base = changes["api_base_url"]
        if base not in (None, DEFAULT_API_BASE_URL) and not admin:
            # The server sends the account's token there: no pointing it at internal hosts.
            raise AdminRequired("only an admin may set api_base_url")
        config["api_base_url"] = base or DEFAULT_API_BASE_URL
    config.setdefault("api_base_url", DEFAULT_API_BASE_URL)
    if "provision_unknown" in changes:
        if changes["provision_unknown"] and not channel.resolve_by_phone:
            raise ValidationFailed(
                "provision_unknown needs resolve_by_phone", field="provision_unknown"
            )
        config["provision_unknown"] = bool(changes["provision_unknown"])
    if channel.resolve_by_phone:
        if not admin:
            raise AdminRequired("only an admin may route senders by phone number")
        channel.owner_user_id = None
    else:
        config["provision_unknown"] = False
        if changes.get("owner"):
            ref = changes["owner"].strip()
            if not admin and ref != actor.id and ref.lower() != actor.email:
                # Before any lookup: whether that account exists stays unsaid.
                raise AdminRequired("only an admin may make a channel for another user")
            owner = await find_user(session, ref)
            if owner is None:
                raise UserNotFound(f"no user {changes['owner']!r}", field="owner")
            channel.owner_user_id = owner.id
    config.setdefault("provision_unknown", False)
    channel.config = config
    if changes.get("auth_token"):
        channel.secret_encrypted = secrets.encrypt(changes["auth_token"])
        channel.secret_env = None
    elif changes.get("auth_token_env"):
        if not admin:
            raise AdminRequired("only an admin may read the token from the environment")
        channel.secret_env = changes["auth_token_env"]
        channel.secret_encrypted = None
    for key in ("endpoint", "model", "agent_id"):
        if key in changes:
            setattr(channel, key, changes[key] or None)
    if channel.endpoint and endpoints is not None and channel.endpoint not in endpoints:
        raise ValidationFailed(f"no endpoint named {channel.endpoint!r}", field="endpoint")
    if "agent_id" in changes and channel.agent_id:
        await get_visible_agent(session, actor, channel.agent_id)


def _scope(user: User) -> Any:
    return True if is_admin(user) else Channel.user_id == user.id


async def list_channels(
    session: AsyncSession, user: User, *, all_users: bool = False
) -> Sequence[Channel]:
    """Channels the user manages (every channel, for an admin asking for all), newest first."""
    scope = _scope(user) if all_users else Channel.user_id == user.id
    query = select(Channel).where(scope).order_by(Channel.created_at.desc(), Channel.id)
    return (await session.scalars(query)).all()


async def get_channel(session: AsyncSession, user: User, channel_id: str) -> Channel:
    """A channel the user manages (any, for an admin); anyone else's is reported missing."""
    channel = await session.scalar(select(Channel).where(Channel.id == channel_id, _scope(user)))
    if channel is None:
        raise ChannelNotFound()
    return channel


async def delete_channel(session: AsyncSession, channel: Channel) -> None:
    """Delete a channel; replies still waiting to go out through it are cancelled."""
    await session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.kind == TWILIO,
            OutboxItem.target_id == channel.id,
            OutboxItem.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.CANCELLED, last_error="channel deleted")
    )
    await session.delete(channel)
    await session.commit()


class ChannelOut(BaseModel):
    """A channel as its manager sees it: never the auth token, only whether one is set."""

    id: str
    type: str
    name: str
    manager_id: str
    owner_id: str | None
    resolve_by_phone: bool
    provision_unknown: bool
    account_sid: str | None
    auth_token_set: bool
    auth_token_env: str | None
    auth_token_env_set: bool | None = Field(
        description="Whether the server has `auth_token_env` set; null without one."
    )
    public_url: str | None
    webhook_url: str = Field(description="The inbound URL to paste into Twilio's console.")
    api_base_url: str
    endpoint: str | None
    model: str | None
    agent_id: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, channel: Channel) -> ChannelOut:
        # Not `model_validate(channel)`: half the fields are read from `config` or derived.
        config = channel.config or {}
        return cls(
            id=channel.id,
            type=channel.type,
            name=channel.name,
            manager_id=channel.user_id,
            owner_id=channel.owner_user_id,
            resolve_by_phone=channel.resolve_by_phone,
            provision_unknown=bool(config.get("provision_unknown")),
            account_sid=config.get("account_sid"),
            auth_token_set=channel.secret_encrypted is not None,
            auth_token_env=channel.secret_env,
            auth_token_env_set=None
            if channel.secret_env is None
            else _env_token(channel) is not None,
            public_url=config.get("public_url"),
            webhook_url=webhook_url(channel),
            api_base_url=config.get("api_base_url", DEFAULT_API_BASE_URL),
            endpoint=channel.endpoint,
            model=channel.model,
            agent_id=channel.agent_id,
            enabled=channel.enabled,
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )


# -- what the webhook and the sender need ----------------------------------------------


async def load_twilio_channel(session: AsyncSession, channel_id: str) -> Channel:
    """The Twilio channel a webhook names (no user scope: the signature authenticates)."""
    channel = await session.get(Channel, channel_id) if len(channel_id) <= 36 else None
    if channel is None or channel.type != TWILIO:
        raise ChannelNotFound()
    return channel


def _env_token(channel: Channel) -> str | None:
    """The token in the channel's variable, if set (never a variable outside TWILIO_*)."""
    name = channel.secret_env or ""
    token = os.environ.get(name, "").strip() if name.startswith(ENV_PREFIX) else ""
    return token or None


def channel_token(channel: Channel, secrets: SecretBox) -> str:
    """The channel's auth token: decrypted, or read from its environment variable now.

    A missing variable is named in the server's log and to the channel's manager
    (`auth_token_env_set`), never to the caller, who may not be Twilio.
    """
    if channel.secret_encrypted is not None:
        return secrets.decrypt(channel.secret_encrypted)
    token = _env_token(channel)
    if token is None:
        logger.warning(
            "channel %s: its auth token variable %s is not set (or not TWILIO_*)",
            channel.id,
            channel.secret_env,
        )
        raise ChannelSecretMissing("the channel's auth token is not configured on the server")
    return token


def channel_ref(channel_id: str) -> str:
    """How the channel appears as a message's key, in the audit and for idempotency.

    `ch:` and the id's 32 hex digits: it must fit `messages.api_key_id` (36 characters),
    where the gateway pipeline records the key a message came with.
    """
    return f"ch:{channel_id.replace('-', '')}"


def _verbatim(public_url: str) -> bool:
    return WEBHOOK_PATH in urlsplit(public_url).path


def webhook_url(channel: Channel) -> str:
    """The inbound URL to paste into Twilio's console, which Twilio signs."""
    public = str((channel.config or {}).get("public_url", ""))
    if _verbatim(public):
        return public
    return f"{public.rstrip('/')}{WEBHOOK_PATH}{channel.id}"


def status_callback_url(channel: Channel, message_id: str) -> str:
    """Where Twilio reports the delivery of a reply's parts (on the same public base)."""
    public = str((channel.config or {}).get("public_url", ""))
    base = public.split(WEBHOOK_PATH, 1)[0] if _verbatim(public) else public.split("?", 1)[0]
    return f"{base.rstrip('/')}{WEBHOOK_PATH}{channel.id}/status/{message_id}"


def signed_url(url: str, raw_query: str) -> str:
    """The URL Twilio signed for a request: the configured URL with the request's query."""
    path = url.split("?", 1)[0]
    return f"{path}?{raw_query}" if raw_query else path


# -- inbound messages ------------------------------------------------------------------


@dataclass(frozen=True)
class InboundSender:
    """Whom a channel's inbound message belongs to, and whether it is answered."""

    caller: Caller
    # The user the message is for when the channel names one (its owner), else None: the
    # sender's phone number resolves it.
    user: str | None
    respond: bool
    # The sender's user was added now (strategy "provisioned" in the audit).
    provisioned: bool


async def inbound_sender(
    session: AsyncSession,
    channel: Channel,
    conversation_id: str,
    phone: str,
    profile_name: str | None,
) -> InboundSender:
    """Who the message belongs to: the channel's owner, or the user with the sender's number
    (provisioned now, in the message's transaction, when the channel says so). A thread that
    exists already must be theirs.

    Raises `users.UserRaced` when another message provisioned the sender meanwhile.
    """
    existing = (
        await session.execute(
            select(Conversation.user_id, Conversation.endpoint, Conversation.agent_id).where(
                Conversation.id == conversation_id
            )
        )
    ).first()
    holder = existing.user_id if existing is not None else None
    # Answered by the thread's endpoint (the channel's, for a new thread); with none, the
    # message is only stored, for a person to answer in the browser.
    target = (
        (existing.endpoint, existing.agent_id)
        if existing is not None
        else (channel.endpoint, channel.agent_id)
    )
    respond = any(target)
    if channel.owner_user_id is not None:
        owner = channel.owner_user_id
        channel_threads.check_thread_owner(conversation_id, holder, owner)
        caller = Caller(system=False, key_owner_id=owner, can_name_user=True)
        return InboundSender(caller, owner, respond, provisioned=False)
    caller = Caller(system=True, key_owner_id=None, can_name_user=False)
    user_id = await find_user_by_phone(session, phone)
    if user_id is not None:
        channel_threads.check_thread_owner(conversation_id, holder, user_id)
        return InboundSender(caller, None, respond, provisioned=False)
    if not (channel.config or {}).get("provision_unknown"):
        raise SenderUnknown(
            "no user has this phone number and the channel does not provision users"
        )
    # The user about to be provisioned holds nothing yet.
    channel_threads.check_thread_owner(conversation_id, holder, None)
    await provision_phone_user(session, phone, str(profile_name or phone))
    return InboundSender(caller, None, respond, provisioned=True)
