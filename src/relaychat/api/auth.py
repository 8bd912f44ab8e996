"""Registration, login, token refresh and logout."""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from fastapi import APIRouter, Cookie, Request, Response, status
from pydantic import BaseModel, EmailStr, Field

from relaychat.api.schemas import UserOut
from relaychat.domain.accounts import sessions, users
from relaychat.domain.accounts.sessions import IssuedSession
from relaychat.errors import RateLimited, RegistrationClosed, Unauthenticated
from relaychat.http.deps import (
    ACCESS_COOKIE,
    CurrentUser,
    ServicesDep,
    SessionDep,
    SettingsDep,
    client_address,
)
from relaychat.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])

REFRESH_COOKIE = "relaychat_refresh"
REFRESH_COOKIE_PATH = "/api/auth"
ACCESS_COOKIE_PATH = "/api"


class RegisterIn(BaseModel):
    email: EmailStr
    password: str = Field(max_length=1024)
    name: str = Field(min_length=1, max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterIn, session: SessionDep, settings: SettingsDep) -> UserOut:
    """Create an account; the first account of an instance is its admin."""
    if not settings.allow_registration:
        raise RegistrationClosed("registration is disabled on this server")
    user = await users.create_user(
        session, email=str(body.email), name=body.name, password=body.password
    )
    return UserOut.of(user)


@router.post("/login")
async def login(
    body: LoginIn, request: Request, response: Response, services: ServicesDep, session: SessionDep
) -> TokenOut:
    """Exchange email and password for an access token and a refresh cookie."""
    settings = services.settings
    key = f"{client_address(request)}|{users.normalize_email(body.email)}"
    verdict = await services.limiter.hit(settings.login_rate_limit, "login", key)
    if not verdict.allowed:
        raise RateLimited(
            "too many login attempts; try again later",
            headers={"Retry-After": str(verdict.retry_after)},
            retry_after=verdict.retry_after,
        )
    issued = await sessions.login(
        session,
        services.tokens,
        email=body.email,
        password=body.password,
        refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
    )
    return _token_response(issued, response, settings)


@router.post("/refresh")
async def refresh(
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    refresh_cookie: Annotated[str | None, Cookie(alias=REFRESH_COOKIE)] = None,
) -> TokenOut:
    """Rotate the refresh cookie and return a fresh access token."""
    if not refresh_cookie:
        raise Unauthenticated("no refresh cookie")
    issued = await sessions.refresh(
        session,
        services.tokens,
        secret=refresh_cookie,
        refresh_ttl_seconds=services.settings.refresh_token_ttl_seconds,
    )
    return _token_response(issued, response, services.settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    refresh_cookie: Annotated[str | None, Cookie(alias=REFRESH_COOKIE)] = None,
) -> None:
    """Revoke the refresh-token family and clear the cookie."""
    if refresh_cookie:
        await sessions.logout(session, secret=refresh_cookie)
    _clear_cookies(response, settings)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(
    response: Response, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> None:
    """Sign out everywhere: every session of yours ends, this one too, and every access
    token issued to them is refused at once on every worker; clears the cookies."""
    await sessions.sign_out_everywhere(session, services.bus, user)
    _clear_cookies(response, services.settings)


def _clear_cookies(response: Response, settings: Settings) -> None:
    response.delete_cookie(ACCESS_COOKIE, **_cookie_attributes(ACCESS_COOKIE_PATH, settings))
    response.delete_cookie(REFRESH_COOKIE, **_cookie_attributes(REFRESH_COOKIE_PATH, settings))


class _CookieAttributes(TypedDict):
    path: str
    httponly: bool
    samesite: Literal["strict"]
    secure: bool


def _cookie_attributes(path: str, settings: Settings) -> _CookieAttributes:
    # Set and deleted with the same attributes: a delete naming another path misses the cookie.
    return {"path": path, "httponly": True, "samesite": "strict", "secure": settings.cookie_secure}


def _token_response(issued: IssuedSession, response: Response, settings: Settings) -> TokenOut:
    # The access token also travels as a cookie for EventSource, which cannot send headers.
    response.set_cookie(
        ACCESS_COOKIE,
        issued.access_token,
        max_age=issued.expires_in,
        **_cookie_attributes(ACCESS_COOKIE_PATH, settings),
    )
    response.set_cookie(
        REFRESH_COOKIE,
        issued.refresh_secret,
        max_age=settings.refresh_token_ttl_seconds,
        **_cookie_attributes(REFRESH_COOKIE_PATH, settings),
    )
    response.headers["Cache-Control"] = "no-store"
    return TokenOut(
        access_token=issued.access_token, expires_in=issued.expires_in, user=UserOut.of(issued.user)
    )
