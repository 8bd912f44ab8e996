"""Sends replies through Twilio's Messages API, one outbox item per reply.

We POST the form ourselves with httpx rather than through the `twilio` REST client: the
base URL must be configurable per channel (tests and `relaychat dev fake-twilio` point it
at a fake) and the call must be async on a shared connection pool.

A reply split into parts is sent part by part. Each part Twilio accepted is added to the
item's payload (`sent`) and saved at once with the worker's `checkpoint` (which also renews
the lease), before the next part is sent: an attempt abandoned at its deadline, cancelled
or cut short by a crash resumes with the first part not yet accepted and never sends one
twice. Each request has one deadline for the whole exchange, and at most 64 KiB of an
answer is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.crypto import SecretBox
from relaychat.domain.telephony.channel_replies import record_sent
from relaychat.domain.telephony.channels import (
    DEFAULT_API_BASE_URL,
    channel_token,
    status_callback_url,
)
from relaychat.errors import AppError
from relaychat.statuses import OutboxStatus
from relaychat.storage.models import Channel, OutboxItem
from relaychat.workers.outbox import Attempt, Checkpoint, parse_retry_after

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
# A message resource or an error is a kilobyte or two; nothing longer is worth reading.
_READ_LIMIT = 64 * 1024
_RESPONSE_KEEP = 2000  # characters of a response body kept in the deliveries log
_MESSAGE_KEEP = 500  # characters of Twilio's error message kept on the reply


def messages_url(api_base_url: str, account_sid: str) -> str:
    """Twilio's Messages resource of an account."""
    return f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"


async def _read(response: httpx.Response) -> bytes:
    """The start of an answer, at most `_READ_LIMIT` bytes; the rest is never read."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= _READ_LIMIT:
            break
    return bytes(kept[:_READ_LIMIT])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _twilio_error(response: httpx.Response, body: bytes) -> dict[str, Any]:
    """Twilio's error body (`code`, `message`), or the HTTP status when it sent none (a
    proxy's HTML page, a truncated or empty body)."""
    found = _json_object(body)
    code = found.get("code")
    message = found.get("message")
    if isinstance(code, int | str) or isinstance(message, str):
        return {
            "code": code if isinstance(code, int | str) else None,
            "message": str(message or "")[:_MESSAGE_KEEP],
            "status": response.status_code,
        }
    reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return {"code": None, "message": reason, "status": response.status_code}


class TwilioSender:
    """The outbox sender of kind `twilio`."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SecretBox,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.secrets = secrets
        self.timeout = timeout
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout)

    async def send(self, item: OutboxItem, checkpoint: Checkpoint) -> Attempt:
        """Send the parts not yet accepted, in order, saving each one Twilio accepted before
        the next; stop at the first failure."""
        payload: dict[str, Any] = json.loads(item.payload)
        # An error of an earlier attempt says nothing about this one.
        payload.pop("last_error", None)
        async with self.sessionmaker() as session:
            channel = await session.get(Channel, item.target_id)
        if channel is None or not channel.enabled:
            reason = "channel deleted" if channel is None else "channel disabled"
            return self._failed(payload, {"code": None, "message": reason}, give_up=True)
        try:
            token = channel_token(channel, self.secrets)
        except AppError as exc:
            # The operator may still set the variable or fix ENCRYPTION_KEY: retry.
            return self._failed(payload, {"code": None, "message": exc.detail})
        config = channel.config or {}
        sid = str(config.get("account_sid", ""))
        url = messages_url(str(config.get("api_base_url") or DEFAULT_API_BASE_URL), sid)
        callback = status_callback_url(channel, payload["message_id"])
        sent: list[dict[str, Any]] = payload.setdefault("sent", [])
        done = {part["index"] for part in sent}
        last: tuple[httpx.Response, bytes] | None = None
        for index, text in enumerate(payload["parts"]):
            if index in done:
                continue
            form = {
                "To": payload["to"],
                "From": payload["from"],
                "Body": text,
                "StatusCallback": callback,
            }
            try:
                # One deadline for the whole exchange: httpx's timeouts are per operation.
                async with (
                    asyncio.timeout(self.timeout),
                    self.http.stream("POST", url, data=form, auth=(sid, token)) as response,
                ):
                    body = await _read(response)
            except (TimeoutError, httpx.TimeoutException):
                error = {"code": None, "message": f"no answer within {self.timeout:g} s"}
                return self._failed(payload, error)
            except httpx.HTTPError as exc:
                error = {"code": None, "message": f"{type(exc).__name__}: {exc}"[:_MESSAGE_KEEP]}
                return self._failed(payload, error)
            excerpt = body.decode(errors="replace")[:_RESPONSE_KEEP]
            if not response.is_success:
                retry = response.status_code == 429 or response.status_code >= 500
                return self._failed(
                    payload,
                    _twilio_error(response, body),
                    give_up=not retry,
                    status_code=response.status_code,
                    retry_after=parse_retry_after(response.headers.get("retry-after"))
                    if retry
                    else None,
                    response_body=excerpt,
                )
            sent.append({"index": index, **self._accepted(body, index)})
            last = (response, body)
            # Saved before the next part: an attempt abandoned from here on resumes after it.
            if not await checkpoint(json.dumps(payload)):
                logger.warning("twilio item %s was taken from this worker; stopped", item.id)
                return Attempt(
                    False,
                    status_code=response.status_code,
                    error="the item was redelivered or cancelled meanwhile; stopped sending",
                    payload=json.dumps(payload),
                    response_body=excerpt,
                )
        return Attempt(
            True,
            status_code=last[0].status_code if last is not None else None,
            payload=json.dumps(payload),
            response_body=last[1].decode(errors="replace")[:_RESPONSE_KEEP] if last else None,
        )

    @staticmethod
    def _accepted(body: bytes, index: int) -> dict[str, Any]:
        resource = _json_object(body)
        # Accepted all the same; without a sid its status callbacks just won't match it.
        return {
            "sid": str(resource.get("sid") or f"unknown-{index}")[:64],
            "status": str(resource.get("status") or "queued")[:32],
        }

    @staticmethod
    def _failed(
        payload: dict[str, Any],
        error: dict[str, Any],
        *,
        give_up: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        response_body: str | None = None,
    ) -> Attempt:
        payload["last_error"] = error
        code = f"{error['code']}: " if error.get("code") else ""
        return Attempt(
            False,
            status_code=status_code,
            error=f"{code}{error.get('message') or 'failed'}",
            retry_after=retry_after,
            give_up=give_up,
            payload=json.dumps(payload),
            response_body=response_body,
        )

    async def settle(
        self, session: AsyncSession, item: OutboxItem, attempt: Attempt, now: datetime
    ) -> None:
        """Write the accepted parts' sids, or the final failure, on the reply's delivery."""
        payload: dict[str, Any] = json.loads(attempt.payload or item.payload)
        # The worker has just written the row's new status in this very transaction.
        status = await session.scalar(select(OutboxItem.status).where(OutboxItem.id == item.id))
        error = None
        if status == OutboxStatus.FAILED:
            # An attempt the worker abandoned at its deadline left no error in the payload.
            error = payload.get("last_error") or {"code": None, "message": attempt.error}
        if not payload.get("sent") and error is None:
            return
        await record_sent(
            session,
            payload["message_id"],
            payload.get("sent") or [],
            error=error,
            now_iso=now.isoformat(),
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()
