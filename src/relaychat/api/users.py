"""The signed-in user's own profile."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from relaychat.api.schemas import UserOut
from relaychat.domain.accounts import sessions, users
from relaychat.errors import RateLimited
from relaychat.http.deps import CurrentSignIn, CurrentUser, ServicesDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api/user", tags=["user"])


class ProfilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    phone_number: str | None = Field(None, max_length=64)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


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


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange, signed_in: CurrentSignIn, session: SessionDep, services: ServicesDep
) -> None:
    """Change your password: every other session of yours ends at once (their access
    tokens are refused on every worker); this one goes on."""
    # Counted like logins: a stolen access token must not become a way to guess the password.
    verdict = await services.limiter.hit(
        services.settings.login_rate_limit, "password", signed_in.user.id
    )
    if not verdict.allowed:
        raise RateLimited(
            "too many attempts to change the password; try again later",
            headers={"Retry-After": str(verdict.retry_after)},
            retry_after=verdict.retry_after,
        )
    await sessions.change_password(
        session,
        services.bus,
        signed_in.user,
        signed_in.claims,
        current_password=body.current_password,
        new_password=body.new_password,
    )
