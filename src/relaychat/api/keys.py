"""API keys: create (the secret is shown once), list, change, revoke and rotate."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.access import keys
from relaychat.domain.access.key_cache import key_changed
from relaychat.domain.access.keys import KEY_PREFIX, KeyPermissions
from relaychat.http.deps import CurrentUser, ServicesDep, SessionDep
from relaychat.resources import Timestamp
from relaychat.statuses import KeyStatus
from relaychat.storage.models import ApiKey

router = APIRouter(prefix="/api/keys", tags=["keys"])

KeyId = Annotated[str, Path(max_length=64)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    permissions: KeyPermissions | None = None
    expires_at: datetime | None = None
    system: bool = False


class KeyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    permissions: dict[str, Any] | None = Field(
        None,
        description="A merge patch (RFC 7396) of the key's permissions: the fields named "
        "change, `null` resets one to its default, the others stay.",
    )
    expires_at: datetime | None = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(keys.DEFAULT_GRACE_SECONDS, ge=0, le=keys.MAX_GRACE_SECONDS)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    owner_id: str
    system: bool
    status: KeyStatus = Field(title="Status")  # titled as it was when it was a `str`
    permissions: KeyPermissions = Field(title="Permissions")
    created_at: Timestamp
    last_used_at: Timestamp | None
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    previous_valid_until: Timestamp | None

    @classmethod
    def from_row(cls, key: ApiKey) -> KeyOut:
        """A key as its owner sees it: never a secret or a hash."""
        return cls(
            id=key.id,
            name=key.name,
            prefix=f"{KEY_PREFIX}{key.lookup}",
            owner_id=key.user_id,
            system=key.system,
            status=keys.key_status(key),
            permissions=keys.stored_permissions(key),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            previous_valid_until=key.previous_valid_until,
        )


class KeyWithSecret(BaseModel):
    key: KeyOut
    secret: str = Field(description="The whole key; shown this once and never again.")


class KeyList(BaseModel):
    keys: list[KeyOut]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: KeyCreate, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> KeyWithSecret:
    """Create a key acting for you (a system key, for admins, may act for anyone)."""
    key, secret = await keys.create_key(
        session,
        user,
        name=body.name,
        permissions=body.permissions,
        expires_at=body.expires_at,
        system=body.system,
        catalog=services.providers,
    )
    return KeyWithSecret(key=KeyOut.from_row(key), secret=secret)


@router.get("")
async def list_(
    user: CurrentUser,
    session: SessionDep,
    all_users: Annotated[
        bool, Query(alias="all", description="Every user's keys (admins).")
    ] = False,
) -> KeyList:
    """Your keys, newest first, revoked ones included."""
    rows = await keys.list_keys(session, user, all_users=all_users)
    return KeyList(keys=[KeyOut.from_row(k) for k in rows])


class SystemKeyOut(BaseModel):
    ref: str = Field(description="`env:` and 8 hex of the key's SHA-256: its id in the audit.")
    source: str = Field(description="The environment variable that sets it.")
    last_used_at: Timestamp | None = Field(description="Its latest request in the audit.")


class SystemKeyList(BaseModel):
    keys: list[SystemKeyOut]


@router.get("/environment")
async def list_environment(
    user: CurrentUser, session: SessionDep, services: ServicesDep
) -> SystemKeyList:
    """The system keys set in this server's environment (admins only): only their
    digests are kept, so a reference and not a prefix; removing one from the environment
    and restarting revokes it."""
    found = await keys.list_system_keys(session, user, services.keys.system_keys)
    return SystemKeyList(
        keys=[SystemKeyOut(ref=k.ref, source=k.source, last_used_at=k.last_used_at) for k in found]
    )


@router.get("/{key_id}")
async def get(key_id: KeyId, user: CurrentUser, session: SessionDep) -> KeyOut:
    """One of your keys (any key, for admins)."""
    return KeyOut.from_row(await keys.get_key(session, user, key_id))


@router.patch("/{key_id}")
async def patch(
    key_id: KeyId, body: KeyPatch, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> KeyOut:
    """Change name, permissions or expiry (`null` clears it); every worker sees it at once."""
    key = await keys.get_key(session, user, key_id)
    changes = body.model_dump(include=body.model_fields_set)
    updated = await keys.update_key(session, key, changes, services.providers)
    await key_changed(services.bus, updated.lookup)
    return KeyOut.from_row(updated)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(
    key_id: KeyId, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> None:
    """Revoke the key: refused at once on every worker."""
    key = await keys.revoke_key(session, await keys.get_key(session, user, key_id))
    await key_changed(services.bus, key.lookup)


@router.post("/{key_id}/rotate")
async def rotate(
    key_id: KeyId,
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    body: KeyRotate | None = None,
) -> KeyWithSecret:
    """A new secret; the old one keeps working for `grace_seconds` (default an hour)."""
    key = await keys.get_key(session, user, key_id)
    grace = body.grace_seconds if body else keys.DEFAULT_GRACE_SECONDS
    rotated, secret = await keys.rotate_key(session, key, grace_seconds=grace)
    await key_changed(services.bus, rotated.lookup)
    return KeyWithSecret(key=KeyOut.from_row(rotated), secret=secret)
