"""Dependencies shared by routes: services, database session, the signed-in user, ownership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.conversations import get_owned_conversation
from relaychat.errors import InvalidToken, Unauthenticated
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Conversation, User


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_app_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """One session per request; anything not committed by the domain is rolled back."""
    async with services.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")


async def get_current_user(
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user whose access token is in the Authorization header."""
    if credentials is None:
        raise Unauthenticated("send `Authorization: Bearer <access token>`")
    claims = services.tokens.verify(credentials.credentials)
    user = await session.get(User, claims.user_id)
    if user is None:
        raise InvalidToken("the token's user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def owned_conversation(
    user: CurrentUser,
    session: SessionDep,
    conversation_id: Annotated[str, Path(max_length=128)],
) -> Conversation:
    """The path's conversation if the current user owns it; 404 otherwise."""
    return await get_owned_conversation(session, user.id, conversation_id)


OwnedConversation = Annotated[Conversation, Depends(owned_conversation)]


def client_address(request: Request) -> str:
    """The peer address (uvicorn resolves X-Forwarded-For only for trusted proxies)."""
    return request.client.host if request.client else "unknown"
