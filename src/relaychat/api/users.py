"""The signed-in user's own profile."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from relaychat.api.schemas import UserOut
from relaychat.domain.accounts import users
from relaychat.http.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(prefix="/api/user", tags=["user"])


class ProfilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    phone_number: str | None = Field(None, max_length=64)


@router.get("")
async def get_me(user: CurrentUser) -> UserOut:
    """The signed-in user."""
    return UserOut.of(user)


@router.patch("")
async def patch_me(
    body: ProfilePatch, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> UserOut:
    """Change name or phone number (stored as E.164; `null` clears it)."""
    changes = body.model_dump(include=body.model_fields_set)
    updated = await users.update_profile(
        session, user, changes=changes, phone_region=settings.phone_default_region
    )
    return UserOut.of(updated)
