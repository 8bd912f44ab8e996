"""Dependencies shared by routes: services, database session, the signed-in user, ownership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Cookie, Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from relaychat import logs
from relaychat.domain.access.keys import AdminRequired
from relaychat.domain.accounts.tokens import AccessClaims
from relaychat.domain.accounts.users import is_admin
from relaychat.domain.messaging.chat import ChatEngine
from relaychat.domain.messaging.conversations import get_owned_conversation
from relaychat.errors import Unauthenticated, UserGone
from relaychat.services import Services
from relaychat.settings import Settings
from relaychat.storage.models import Conversation, User


# The small dependencies are `async def` on purpose: FastAPI runs plain `def` ones in its
# thread pool, a hop that costs more than the work (~0.1 ms each, measured in bench.gateway).
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_app_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """One session per request; anything not committed by the domain is rolled back."""
    async with services.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")
# External systems: the gateway reads the header itself; this documents it in /openapi.json.
api_key_header = APIKeyHeader(
    name="x-api-key",
    scheme_name="ApiKey",
    auto_error=False,
    description="API key from /api/keys, the CLI or EXTERNAL_API_KEYS",
)
ApiKeyDoc = Annotated[str | None, Depends(api_key_header)]


ACCESS_COOKIE = "relaychat_access"


async def access_claims(services: Services, token: str) -> AccessClaims:
    """The claims of an access token that still counts: signed by us, unexpired, of a
    user who exists and is not disabled, and of a session not ended since it was issued
    (the user's standing comes from a per-process cache: a dict lookup)."""
    claims = services.tokens.verify(token)
    await services.standing.admit(claims)
    return claims


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthenticated("send `Authorization: Bearer <access token>`")
    return credentials.credentials


async def token_user_id(
    services: Services, credentials: HTTPAuthorizationCredentials | None
) -> str:
    """The id of the user whose access token is in the Authorization header, without
    reading the user's row."""
    return (await access_claims(services, _bearer_token(credentials))).user_id


async def _user(session: AsyncSession, user_id: str) -> User:
    logs.bind(user_id=user_id)
    user = await session.get(User, user_id)
    if user is None:
        raise UserGone()
    return user


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user and the claims of the access token that says so."""

    user: User
    claims: AccessClaims


async def get_signed_in(
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> SignedIn:
    """The user whose access token is in the Authorization header, with its claims (for
    the routes that act on the caller's own session)."""
    claims = await access_claims(services, _bearer_token(credentials))
    return SignedIn(await _user(session, claims.user_id), claims)


CurrentSignIn = Annotated[SignedIn, Depends(get_signed_in)]


async def get_current_user(
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The user whose access token is in the Authorization header."""
    return await _user(session, await token_user_id(services, credentials))


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin(user: CurrentUser) -> User:
    """The signed-in user, if an admin; 403 `admin_required` otherwise."""
    if not is_admin(user):
        raise AdminRequired("only an admin may do this")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


async def get_stream_user(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    access_cookie: Annotated[str | None, Cookie(alias=ACCESS_COOKIE)] = None,
) -> User:
    """The user of an event stream: header, or the access cookie a browser's EventSource
    sends (it cannot set headers). Never a token in the query string.

    Uses its own short session: a request-scoped one would hold a database connection
    for as long as the stream stays open.
    """
    token = credentials.credentials if credentials else access_cookie
    if not token:
        raise Unauthenticated("send `Authorization: Bearer <access token>` or the access cookie")
    user_id = (await access_claims(services, token)).user_id
    async with services.sessionmaker() as session:
        return await _user(session, user_id)


StreamUser = Annotated[User, Depends(get_stream_user)]


async def get_engine(services: ServicesDep) -> ChatEngine:
    return services.chat


EngineDep = Annotated[ChatEngine, Depends(get_engine)]


async def owned_conversation(
    user: CurrentUser,
    session: SessionDep,
    conversation_id: Annotated[str, Path()],
) -> Conversation:
    """The path's conversation if the current user owns it; 404 otherwise (also for an id
    that no conversation can have: not a validation error, see conversation_ids)."""
    return await get_owned_conversation(session, user.id, conversation_id)


OwnedConversation = Annotated[Conversation, Depends(owned_conversation)]


def client_address(request: Request) -> str:
    """The peer address (uvicorn resolves X-Forwarded-For only for trusted proxies)."""
    return request.client.host if request.client else "unknown"
