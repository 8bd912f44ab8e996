"""A fake Twilio REST API: the Messages resource, on Twilio's wire format.

Routes
    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   send: form `To`, `From`, `Body`,
                                                           `MediaUrl`, `StatusCallback`
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   what was sent, newest first

Requests need HTTP basic auth: the account sid of the URL and its auth token (any
non-empty token unless `accounts` pins one per sid). Answers are Twilio's: 201 with the
message resource (`sid` `SM…`, `status` `queued`), or an error body
`{"code", "message", "more_info", "status"}` — 401/20003 bad credentials, 400/21604 and
21603 missing `To`/`From`, 21211 invalid `To`, 21910 `To` and `From` on different channels,
21602 neither body nor media, 21617 a body over 1600 characters.

Tests read `fake.messages`, and inject failures with `fake.fail_next(times, status=500)`
(or 429 with `retry_after`, or a 4xx with a Twilio `code`; `after=N` lets N sends through
first; `hang=seconds` answers only after that long, as a stuck API would, and accepts
nothing). With `callbacks=True`, each
message's `StatusCallback` is sent `sent`, then `delivered`, signed with the token the way
Twilio signs (`X-Twilio-Signature`), so a local server sees its replies delivered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

API_VERSION = "2010-04-01"
MAX_BODY_UNITS = 1600
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ERRORS = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21910: "Invalid From and To pair. From and To should be of the same channel.",
}
_DEFAULT_CODES = {401: 20003, 429: 20429, 500: 20500, 503: 20500}


@dataclass
class SentMessage:
    """One message the fake accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    media_urls: list[str]
    status_callback: str | None
    created_at: datetime

    def resource(self) -> dict[str, Any]:
        """The message as Twilio's JSON resource."""
        stamp = format_datetime(self.created_at)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(max(1, -(-len(self.body) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class _Failure:
    status: int
    code: int | None
    retry_after: int | None
    hang: float = 0.0


@dataclass
class FakeTwilioState:
    """What the fake was sent, and how it should behave next."""

    accounts: dict[str, str] | None = None
    callbacks: bool = False
    echo: bool = False
    messages: list[SentMessage] = field(default_factory=list)
    requests: int = 0
    failures: deque[_Failure] = field(default_factory=deque)
    # Sends still accepted before the queued failures start.
    fail_after: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 500,
        code: int | None = None,
        retry_after: int | None = None,
        after: int = 0,
        hang: float = 0.0,
    ) -> None:
        """Answer `times` sends with this error instead of accepting them (after `hang`
        seconds), once `after` more sends were accepted."""
        self.fail_after = after
        for _ in range(times):
            self.failures.append(_Failure(status, code, retry_after, hang))


def _error(status: int, code: int | None, headers: dict[str, str] | None = None) -> JSONResponse:
    code = code or _DEFAULT_CODES.get(status, 20500 if status >= 500 else 21211)
    return JSONResponse(
        {
            "code": code,
            "message": _ERRORS.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
        headers=headers,
    )


def _credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep and user and password else None


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check(form: dict[str, str], media: list[str]) -> int | None:
    """The Twilio error code this message earns, if any."""
    to, from_ = form.get("To", "").strip(), form.get("From", "").strip()
    if not to:
        return 21604
    if not from_:
        return 21603
    if to.startswith("whatsapp:") != from_.startswith("whatsapp:"):
        return 21910
    if not _E164.fullmatch(to.removeprefix("whatsapp:")):
        return 21211
    body = form.get("Body", "")
    if not body and not media:
        return 21602
    if _units(body) > MAX_BODY_UNITS:
        return 21617
    return None


def create_fake_twilio_app(state: FakeTwilioState | None = None) -> FastAPI:
    """The fake as an ASGI app; its state is at `app.state.twilio`."""
    state = state or FakeTwilioState()
    app = FastAPI(title="relaychat fake Twilio", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.twilio = state
    path = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"

    def authorized(request: Request, account_sid: str) -> str | None:
        creds = _credentials(request)
        if creds is None or creds[0] != account_sid:
            return None
        if state.accounts is not None and state.accounts.get(account_sid) != creds[1]:
            return None
        return creds[1]

    @app.post(path)
    async def send(account_sid: str, request: Request) -> JSONResponse:
        state.requests += 1
        token = authorized(request, account_sid)
        if token is None:
            return _error(401, 20003)
        if state.failures and state.fail_after > 0:
            state.fail_after -= 1
        elif state.failures:
            failure = state.failures.popleft()
            if failure.hang:
                await asyncio.sleep(failure.hang)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
            return _error(failure.status, failure.code, headers)
        raw = await request.form()
        media = [str(v) for v in raw.getlist("MediaUrl")]
        form = {k: str(v) for k, v in raw.items()}
        code = _check(form, media)
        if code is not None:
            return _error(400, code)
        message = SentMessage(
            sid=f"SM{secrets.token_hex(16)}",
            account_sid=account_sid,
            to=form["To"].strip(),
            from_=form["From"].strip(),
            body=form.get("Body", ""),
            media_urls=media,
            status_callback=form.get("StatusCallback") or None,
            created_at=datetime.now(UTC),
        )
        state.messages.append(message)
        if state.echo:
            print(f"{message.sid} {message.from_} -> {message.to}: {message.body}", flush=True)
        if state.callbacks and message.status_callback:
            task = asyncio.create_task(_report(message, token))
            state._tasks.add(task)
            task.add_done_callback(state._tasks.discard)
        return JSONResponse(message.resource(), status_code=201)

    @app.get(path)
    async def list_(account_sid: str, request: Request) -> JSONResponse:
        if authorized(request, account_sid) is None:
            return _error(401, 20003)
        mine = [m.resource() for m in reversed(state.messages) if m.account_sid == account_sid]
        return JSONResponse({"messages": mine, "page": 0, "page_size": len(mine)})

    @app.get(f"/{API_VERSION}/Accounts/{{account_sid}}.json")
    async def account(account_sid: str, request: Request) -> JSONResponse:
        """Twilio's "fetch an account": what `relaychat doctor` asks to prove credentials."""
        if authorized(request, account_sid) is None:
            return _error(401, 20003)
        return JSONResponse(
            {"sid": account_sid, "friendly_name": "fake", "status": "active", "type": "Full"}
        )

    return app


async def _report(message: SentMessage, token: str) -> None:
    """Tell the sender's StatusCallback the message was sent, then delivered, as Twilio does."""
    assert message.status_callback is not None
    async with httpx.AsyncClient(timeout=10) as http:
        for status in ("sent", "delivered"):
            await asyncio.sleep(0.05)
            form = {
                "AccountSid": message.account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_,
                "To": message.to,
                "MessageSid": message.sid,
                "SmsSid": message.sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            signature = RequestValidator(token).compute_signature(message.status_callback, form)
            with contextlib.suppress(httpx.HTTPError):
                await http.post(
                    message.status_callback, data=form, headers={"X-Twilio-Signature": signature}
                )


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class FakeTwilio:
    """A running fake: its base URL (a channel's `api_base_url`) and its state."""

    url: str
    state: FakeTwilioState

    @property
    def messages(self) -> list[SentMessage]:
        return self.state.messages

    def fail_next(self, times: int = 1, **kwargs: Any) -> None:
        self.state.fail_next(times, **kwargs)


@contextlib.asynccontextmanager
async def running_fake_twilio(**fields: Any) -> AsyncIterator[FakeTwilio]:
    """Serve the fake on 127.0.0.1 and an ephemeral port in this event loop until exit."""
    state = FakeTwilioState(**fields)
    app = create_fake_twilio_app(state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _InProcessServer(
        uvicorn.Config(app, lifespan="off", ws="none", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the fake Twilio server stopped while starting")
            await asyncio.sleep(0.005)
        yield FakeTwilio(url=f"http://127.0.0.1:{port}", state=state)
    finally:
        for pending in list(state._tasks):
            pending.cancel()
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()


def serve_fake_twilio(host: str, port: int, state: FakeTwilioState) -> None:
    """Serve the fake in the foreground (the `relaychat dev fake-twilio` command)."""
    uvicorn.run(create_fake_twilio_app(state), host=host, port=port, ws="none")
