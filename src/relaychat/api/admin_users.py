"""Users, for admins: list and search them, change roles, disable and enable accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from relaychat.api.schemas import UserOut
from relaychat.domain.accounts import admin
from relaychat.http.deps import AdminUser, ServicesDep, SessionDep
from relaychat.statuses import UserRole
from relaychat.storage.models import User

router = APIRouter(prefix="/api/admin/users", tags=["admin"])

UserId = Annotated[str, Path(max_length=64)]


class AdminUserOut(UserOut):
    """A user as admins see them: with whether the account is disabled, and since when."""

    disabled: bool
    disabled_at: datetime | None

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(
            **UserOut.of(user).model_dump(),
            disabled=user.disabled_at is not None,
            disabled_at=user.disabled_at,
        )


class AdminUserList(BaseModel):
    users: list[AdminUserOut]
    next_cursor: str | None


class AdminUserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: UserRole | None = None
    disabled: bool | None = None


@router.get("")
async def list_(
    _admin: AdminUser,
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of an email or a name, any case.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=admin.MAX_PAGE)] = admin.DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of a page.")
    ] = None,
) -> AdminUserList:
    """Every user, oldest first, disabled ones included (admins only)."""
    page = await admin.list_users(session, query=q, limit=limit, cursor=cursor)
    return AdminUserList(
        users=[AdminUserOut.of(u) for u in page.users], next_cursor=page.next_cursor
    )


@router.patch("/{user_id}")
async def patch(
    user_id: UserId,
    body: AdminUserPatch,
    actor: AdminUser,
    session: SessionDep,
    services: ServicesDep,
) -> AdminUserOut:
    """Change a user's role, or disable (`disabled: true`) or enable an account (admins
    only). Disabling ends the user's sessions and refuses their API keys at once."""
    user = await admin.update_user(
        session, services.bus, actor, user_id, role=body.role, disabled=body.disabled
    )
    return AdminUserOut.of(user)
