"""API keys: secrets, permissions and their checks, authentication, and management.

A managed key reads `rck_<lookup>_<secret>`: the lookup finds the row in one indexed read,
and only a SHA-256 of the whole key is stored. Keys from the environment
(`EXTERNAL_MESSAGE_API_KEY`, `EXTERNAL_API_KEYS`) are system keys with every permission.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from limits import RateLimitItem, RateLimitItemPerSecond
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.accounts.users import is_admin
from relaychat.domain.agent.agents import AgentNotFound
from relaychat.domain.ids import new_id
from relaychat.domain.merge_patch import merge_patch
from relaychat.errors import (
    Conflict,
    ErrorCode,
    Forbidden,
    NotFound,
    UserDisabled,
    ValidationFailed,
)
from relaychat.statuses import KeyStatus
from relaychat.storage.models import ApiKey, AuditEvent, User
from relaychat.storage.types import utcnow

if TYPE_CHECKING:
    from relaychat.domain.access.key_cache import KeyCache, KeySnapshot
    from relaychat.domain.messaging.conversations import EndpointCatalog

KEY_PREFIX = "rck_"
LOOKUP_HEX_CHARS = 12
DEFAULT_GRACE_SECONDS = 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600
# Longer than any key we issue or anyone would configure; hashing megabytes is pointless.
MAX_RAW_KEY_LENGTH = 1024
_MANAGED_KEY = re.compile(rf"{KEY_PREFIX}([0-9a-f]{{{LOOKUP_HEX_CHARS}}})_[A-Za-z0-9_-]{{20,200}}")
# Compared against when a lookup is unknown, so that path does the same work as a miss.
_DUMMY_HASH = hashlib.sha256(b"relaychat: no such key").hexdigest()

Pattern = Annotated[str, Field(min_length=1, max_length=128)]


# -- errors ----------------------------------------------------------------------------


class KeyRefused(Forbidden):
    """A key that does not authenticate; carries the key's id (when known) for the audit."""

    def __init__(
        self, detail: str | None = None, *, key_id: str | None = None, owner_id: str | None = None
    ) -> None:
        super().__init__(detail)
        # Attributes, not problem fields: the caller's audit record wants them, the client not.
        self.key_id = key_id
        self.owner_id = owner_id


class InvalidApiKey(KeyRefused):
    code = ErrorCode.INVALID_API_KEY
    title = "Invalid API key"


class ApiKeyRevoked(KeyRefused):
    code = ErrorCode.API_KEY_REVOKED
    title = "API key revoked"


class ApiKeyExpired(KeyRefused):
    code = ErrorCode.API_KEY_EXPIRED
    title = "API key expired"


class KeyOwnerDisabled(KeyRefused, UserDisabled):
    """The key is sound but an admin disabled its owner: `user_disabled`, as for them."""

    title = "The API key's owner is disabled"


class PermissionDenied(Forbidden):
    """A rule of the key's permissions refused the request; `rule` names it."""

    code = ErrorCode.PERMISSION_DENIED
    title = "The API key's permissions refuse this request"


class AdminRequired(Forbidden):
    code = ErrorCode.ADMIN_REQUIRED
    title = "Only an admin may do this"


class ApiKeyNotFound(NotFound):
    code = ErrorCode.API_KEY_NOT_FOUND
    title = "API key not found"


class ApiKeyInactive(Conflict):
    code = ErrorCode.API_KEY_INACTIVE
    title = "The API key is revoked"


# -- permissions -----------------------------------------------------------------------


class RateLimitRule(BaseModel):
    """At most `requests` per moving `window` of seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Bounded: a moving window keeps one timestamp per request it counts.
    requests: int = Field(gt=0, le=100_000)
    window: int = Field(gt=0, le=86_400)

    def item(self) -> RateLimitItem:
        """The rule as a `limits` item."""
        return RateLimitItemPerSecond(self.requests, self.window)


class KeyPermissions(BaseModel):
    """What a key may do; `None` lists allow anything, empty lists allow nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_endpoints: list[Annotated[str, Field(max_length=100)]] | None = Field(
        None, max_length=100
    )
    allowed_conversations: list[Pattern] | None = Field(
        None, max_length=100, description="Glob patterns such as `sms-*`."
    )
    required_metadata: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=50
    )
    rate_limit: RateLimitRule | None = None
    allowed_agents: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=100)
    can_create_conversations: bool = False
    can_respond: bool = True
    respond_default: bool = True
    default_endpoint: str | None = Field(None, max_length=100)
    default_model: str | None = Field(None, max_length=200)
    default_agent_id: str | None = Field(None, max_length=64)
    can_name_user: bool = False
    max_tokens_per_day: int | None = Field(
        None,
        gt=0,
        le=10**12,
        description="At most this many tokens of replies a UTC day; over it, a request for "
        "a reply is refused 429 `budget_exceeded`. None: no budget.",
    )

    @model_validator(mode="after")
    def _no_default_reply_without_replies(self) -> KeyPermissions:
        # Callers read `respond_default` alone; it must never ask for what is forbidden.
        if not self.can_respond and self.respond_default:
            object.__setattr__(self, "respond_default", False)
        return self

    @classmethod
    def unrestricted(cls) -> KeyPermissions:
        """Everything allowed: the permissions of keys from the environment."""
        return cls(can_create_conversations=True, can_name_user=True)


def _deny(rule: str, detail: str, **fields: Any) -> PermissionDenied:
    return PermissionDenied(f"{detail} (rule {rule})", rule=rule, **fields)


def check_conversation(perms: KeyPermissions, conversation_id: str) -> None:
    """Refuse a conversation id that matches none of the key's patterns."""
    patterns = perms.allowed_conversations
    if patterns is not None and not any(fnmatchcase(conversation_id, p) for p in patterns):
        raise _deny("allowed_conversations", "this key may not post to that conversation")


def check_endpoint(perms: KeyPermissions, endpoint: str) -> None:
    """Refuse an endpoint the key may not use."""
    if perms.allowed_endpoints is not None and endpoint not in perms.allowed_endpoints:
        raise _deny("allowed_endpoints", f"this key may not use endpoint {endpoint!r}")


def check_agent(perms: KeyPermissions, agent_id: str) -> None:
    """Refuse an agent the key may not use."""
    if perms.allowed_agents is not None and agent_id not in perms.allowed_agents:
        raise _deny("allowed_agents", f"this key may not use agent {agent_id!r}")


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | dict) and not value)


def check_metadata(perms: KeyPermissions, metadata: dict[str, Any] | None) -> None:
    """Refuse a message whose metadata lacks a required field (absent or empty)."""
    metadata = metadata or {}
    missing = [name for name in perms.required_metadata if _blank(metadata.get(name))]
    if missing:
        raise _deny(
            "required_metadata",
            f"metadata must include {', '.join(missing)}",
            missing=missing,
        )


def check_respond(perms: KeyPermissions) -> None:
    """Refuse a request for a reply from a key that may not trigger one."""
    if not perms.can_respond:
        raise _deny("can_respond", "this key may not ask for replies")


def check_create(perms: KeyPermissions) -> None:
    """Refuse creating a conversation (its id is checked by `check_conversation`)."""
    if not perms.can_create_conversations:
        raise _deny("can_create_conversations", "this key may not create conversations")


# -- principals and secrets ------------------------------------------------------------


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling with a key, as the gateway sees it."""

    key_id: str | None  # the ApiKey row's id; None for keys from the environment
    key_ref: str  # the key id, or `env:` and 8 hex of the key's digest
    name: str
    owner_id: str | None
    system: bool
    permissions: KeyPermissions
    # The tag of the channel this principal stands for (see channel_threads), if any.
    channel_tag: str | None = None

    def acts_for(self, user_id: str) -> bool:
        """Whether the key may act for this user (a user's key acts for its owner only)."""
        return self.system or user_id == self.owner_id


def key_hash(raw_key: str) -> str:
    """SHA-256 hex of a whole key; high entropy makes a slow hash unnecessary."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh `(lookup, key)` pair."""
    lookup = secrets.token_hex(LOOKUP_HEX_CHARS // 2)
    return lookup, _new_key(lookup)


def _new_key(lookup: str) -> str:
    """A whole key with this lookup and a fresh secret, shaped as `parse_lookup` reads it."""
    return f"{KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"


def parse_lookup(raw_key: str) -> str | None:
    """The lookup part of a managed key, or None if it is not shaped like one."""
    match = _MANAGED_KEY.fullmatch(raw_key)
    return match.group(1) if match else None


MESSAGE_KEY_VARIABLE = "EXTERNAL_MESSAGE_API_KEY"
MORE_KEYS_VARIABLE = "EXTERNAL_API_KEYS"


@dataclass(frozen=True)
class SystemKey:
    """A key from the environment: only its digest is kept, and the variable that set it
    (so an admin knows where to remove it: such a key is revoked by the environment)."""

    digest: bytes
    source: str = MORE_KEYS_VARIABLE

    @property
    def ref(self) -> str:
        return f"env:{self.digest.hex()[:8]}"


class SystemKeySettings(Protocol):
    external_message_api_key: str | None
    external_api_keys: list[str]


def system_keys(
    message_key: str | None, more: Iterable[str] | str | None = None
) -> list[SystemKey]:
    """Digests of the configured keys (`more` may be the raw `k1,k2` string); blanks skipped,
    a key set twice kept once, under the first variable that names it."""
    if isinstance(more, str):
        more = more.split(",")
    raw = [(message_key or "", MESSAGE_KEY_VARIABLE)]
    raw += [(key, MORE_KEYS_VARIABLE) for key in more or ()]
    sources: dict[bytes, str] = {}
    for key, source in raw:
        if key.strip():
            sources.setdefault(hashlib.sha256(key.strip().encode()).digest(), source)
    return [SystemKey(digest, source) for digest, source in sources.items()]


def system_keys_from_settings(settings: SystemKeySettings) -> list[SystemKey]:
    """The system keys of these settings."""
    return system_keys(settings.external_message_api_key, settings.external_api_keys)


def match_system_key(keys: Sequence[SystemKey], raw_key: str) -> SystemKey | None:
    """The system key equal to `raw_key`, comparing against every one in constant time."""
    digest = hashlib.sha256(raw_key.strip().encode()).digest()
    found = None
    for key in keys:  # no early exit: the time taken says nothing about which key matched
        if hmac.compare_digest(key.digest, digest) and found is None:
            found = key
    return found


@functools.cache
def system_principal(key: SystemKey) -> KeyPrincipal:
    """The principal of a key from the environment (made once: both are immutable)."""
    return KeyPrincipal(
        key_id=None,
        key_ref=key.ref,
        name="system",
        owner_id=None,
        system=True,
        permissions=KeyPermissions.unrestricted(),
    )


def _matches(snapshot: KeySnapshot, digest: str, now: datetime) -> bool:
    """Whether `digest` is the key's secret, or its previous one within the grace period."""
    current = hmac.compare_digest(digest, snapshot.secret_hash)
    previous = hmac.compare_digest(digest, snapshot.previous_secret_hash or _DUMMY_HASH)
    in_grace = snapshot.previous_valid_until is not None and snapshot.previous_valid_until > now
    return current or (previous and in_grace)


async def authenticate(session: AsyncSession | None, cache: KeyCache, raw_key: str) -> KeyPrincipal:
    """The principal of `raw_key`, or InvalidApiKey/ApiKeyRevoked/ApiKeyExpired/
    KeyOwnerDisabled (all 403).
    Without a `session` the cache opens one only when it must read the key."""
    raw_key = raw_key.strip()
    if not raw_key or len(raw_key) > MAX_RAW_KEY_LENGTH:
        raise InvalidApiKey()
    system = match_system_key(cache.system_keys, raw_key)
    if system is not None:
        return system_principal(system)
    lookup = parse_lookup(raw_key)
    digest, now = key_hash(raw_key), utcnow()
    snapshot = await cache.get(session, lookup) if lookup else None
    if lookup and snapshot is not None and not _matches(snapshot, digest, now):
        # Rotated where no signal reaches us (a CLI without Redis): the new secret works now.
        snapshot = await cache.get(session, lookup, fresh=True)
    if snapshot is None:
        hmac.compare_digest(digest, _DUMMY_HASH)
        raise InvalidApiKey()
    if not _matches(snapshot, digest, now):
        raise InvalidApiKey()
    # Only a holder of the secret learns that the key was revoked or has expired.
    if snapshot.revoked_at is not None:
        raise ApiKeyRevoked(key_id=snapshot.id, owner_id=snapshot.owner_id)
    if snapshot.expires_at is not None and snapshot.expires_at <= now:
        raise ApiKeyExpired(key_id=snapshot.id, owner_id=snapshot.owner_id)
    if snapshot.owner_disabled:
        raise KeyOwnerDisabled(
            "the key's owner is disabled", key_id=snapshot.id, owner_id=snapshot.owner_id
        )
    cache.touch(snapshot.id, now)
    return snapshot.principal()


# -- management ------------------------------------------------------------------------


def key_status(key: ApiKey, now: datetime | None = None) -> KeyStatus:
    """Revoked, expired, or else active."""
    if key.revoked_at is not None:
        return KeyStatus.REVOKED
    if key.expires_at is not None and key.expires_at <= (now or utcnow()):
        return KeyStatus.EXPIRED
    return KeyStatus.ACTIVE


def stored_permissions(key: ApiKey) -> KeyPermissions:
    """The key's permissions as stored."""
    return KeyPermissions.model_validate(key.permissions or {})


def patched_permissions(current: KeyPermissions, patch: dict[str, Any] | None) -> KeyPermissions:
    """`current` changed by a merge patch (RFC 7396): named fields change, `null` resets one
    to its default, the others stay; a `null` patch resets them all."""
    merged = merge_patch(current.model_dump(mode="json"), patch)
    try:
        return KeyPermissions.model_validate(merged or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(["permissions", *(str(part) for part in error["loc"])])
        raise ValidationFailed(f"{field}: {error['msg']}", field=field) from None


_DEFAULT_FIELDS = {
    "endpoint": "default_endpoint",
    "model": "default_model",
    "agent_id": "default_agent_id",
}


async def _check_defaults(
    session: AsyncSession,
    owner_id: str,
    perms: KeyPermissions,
    catalog: EndpointCatalog | None,
    before: KeyPermissions | None = None,
) -> None:
    """Refuse defaults that would fail in every conversation the key creates: an agent the
    owner may not use (as if it did not exist), an endpoint that is not configured, a model
    the endpoint does not offer. The conversations' own check, so both say the same; only
    checked when a default changes. Without a catalog only the agent is checked."""
    from relaychat.domain.messaging.conversations import check_target  # conversations imports us

    defaults = {field: getattr(perms, name) for field, name in _DEFAULT_FIELDS.items()}
    if before is not None and all(
        getattr(before, name) == defaults[field] for field, name in _DEFAULT_FIELDS.items()
    ):
        return
    owner = await session.get(User, owner_id)
    if owner is None:  # keys outlive no owner; nothing to check against
        return
    if catalog is None:
        defaults = {"agent_id": defaults["agent_id"]}
        catalog = _NO_CATALOG
    try:
        await check_target(session, owner, catalog, defaults)
    except (AgentNotFound, ValidationFailed) as exc:
        field = exc.fields.get("field")
        if field in _DEFAULT_FIELDS:
            exc.fields["field"] = f"permissions.{_DEFAULT_FIELDS[field]}"
        raise


class _NoCatalog:
    """No endpoints to check against (callers without a registry check the agent only)."""

    def names(self) -> list[str]:
        return []

    async def models(self, name: str) -> list[str]:
        return []


_NO_CATALOG = _NoCatalog()


def _future_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    # A time without a zone is read as UTC, the zone every stored time is in.
    moment = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    if moment <= utcnow():
        raise ValidationFailed("expires_at must be in the future", field="expires_at")
    return moment.astimezone(UTC)


async def create_key(
    session: AsyncSession,
    owner: User,
    *,
    name: str,
    permissions: KeyPermissions | None = None,
    expires_at: datetime | None = None,
    system: bool = False,
    catalog: EndpointCatalog | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key owned by `owner`; returns it and its secret, which is never stored.
    `catalog`: the configured endpoints its defaults are checked against."""
    if system and not is_admin(owner):
        raise AdminRequired("only an admin may create a system key")
    expiry = _future_expiry(expires_at)
    if permissions is not None:
        await _check_defaults(session, owner.id, permissions, catalog)
    stored = (permissions or KeyPermissions()).model_dump(mode="json")
    for _attempt in range(3):
        lookup, secret = new_secret()
        key = ApiKey(
            id=new_id(),
            lookup=lookup,
            name=name.strip(),
            user_id=owner.id,
            system=system,
            secret_hash=key_hash(secret),
            permissions=stored,
            created_at=utcnow(),
            expires_at=expiry,
        )
        session.add(key)
        try:
            await session.commit()
        except IntegrityError:  # 48 random bits collided with another key's lookup
            await session.rollback()
            continue
        return key, secret
    raise RuntimeError("could not find a free key lookup")


async def find_key(session: AsyncSession, key_id: str) -> ApiKey:
    """The key with this id, whoever owns it (operators, the CLI)."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise ApiKeyNotFound(f"no API key {key_id!r}", key_id=key_id)
    return key


async def get_key(session: AsyncSession, user: User, key_id: str) -> ApiKey:
    """A key of the user's (any key for an admin); another user's key is reported missing."""
    key = await session.get(ApiKey, key_id)
    if key is None or (key.user_id != user.id and not is_admin(user)):
        raise ApiKeyNotFound(f"no API key {key_id!r}", key_id=key_id)
    return key


async def list_keys(
    session: AsyncSession, user: User, *, all_users: bool = False
) -> Sequence[ApiKey]:
    """The user's keys, newest first; every user's with `all_users` (admins only)."""
    if all_users and not is_admin(user):
        raise AdminRequired("only an admin may list every key")
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if not all_users:
        query = query.where(ApiKey.user_id == user.id)
    return (await session.scalars(query)).all()


@dataclass(frozen=True)
class SystemKeyUse:
    """A key from the environment as an admin sees it: never the key nor its digest."""

    ref: str
    source: str
    last_used_at: datetime | None


async def list_system_keys(
    session: AsyncSession, user: User, configured: Sequence[SystemKey]
) -> list[SystemKeyUse]:
    """The keys from this server's environment with their last request (admins only).

    Their requests are audited under `ref`; each key's latest is one step down
    `ix_audit_key_time` from its end, so this costs a probe per key, not a count.
    """
    if not is_admin(user):
        raise AdminRequired("only an admin may list the keys from the environment")
    if not configured:
        return []
    latest = [
        select(func.max(AuditEvent.created_at))
        .where(AuditEvent.api_key_id == key.ref)
        .scalar_subquery()
        for key in configured
    ]
    found = (await session.execute(select(*latest))).one()
    return [
        SystemKeyUse(key.ref, key.source, moment)
        for key, moment in zip(configured, found, strict=True)
    ]


def _active(key: ApiKey) -> None:
    if key.revoked_at is not None:
        raise ApiKeyInactive(f"API key {key.id} is revoked", key_id=key.id)


async def update_key(
    session: AsyncSession,
    key: ApiKey,
    changes: dict[str, Any],
    catalog: EndpointCatalog | None = None,
) -> ApiKey:
    """Change name, permissions (a `KeyPermissions` replaces them, a dict merge-patches
    them) or expiry; `catalog` as for `create_key`."""
    _active(key)
    if "name" in changes:
        if not changes["name"] or not str(changes["name"]).strip():
            raise ValidationFailed("name cannot be empty", field="name")
        key.name = str(changes["name"]).strip()
    if "permissions" in changes:
        before = stored_permissions(key)
        perms = changes["permissions"]
        if not isinstance(perms, KeyPermissions):
            perms = patched_permissions(before, perms)
        await _check_defaults(session, key.user_id, perms, catalog, before)
        key.permissions = perms.model_dump(mode="json")
    if "expires_at" in changes:
        key.expires_at = _future_expiry(changes["expires_at"])
    await session.commit()
    return key


async def revoke_key(session: AsyncSession, key: ApiKey) -> ApiKey:
    """Revoke the key for good (revoking twice keeps the first time)."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.commit()
    return key


async def rotate_key(
    session: AsyncSession, key: ApiKey, *, grace_seconds: int = DEFAULT_GRACE_SECONDS
) -> tuple[ApiKey, str]:
    """A new secret; the current one keeps working for `grace_seconds` (an older one stops)."""
    _active(key)
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationFailed(
            f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}", field="grace_seconds"
        )
    secret = _new_key(key.lookup)
    now = utcnow()
    key.previous_secret_hash = key.secret_hash if grace_seconds else None
    key.previous_valid_until = now + timedelta(seconds=grace_seconds) if grace_seconds else None
    key.secret_hash = key_hash(secret)
    await session.commit()
    return key, secret
