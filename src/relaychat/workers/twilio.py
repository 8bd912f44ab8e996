"""Sends replies through Twilio's Messages API, one outbox item per reply.

We POST the form ourselves with httpx rather than through the `twilio` REST client: the
base URL must be configurable per channel (tests and `relaychat dev fake-twilio` point it
at a fake) and the call must be async on a shared connection pool.

A reply split into parts is sent part by part; each part Twilio accepted is written into
the item's payload (`sent`), which the worker stores whatever the outcome, so a retry
resumes with the first part not yet accepted and never sends one twice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat.crypto import SecretBox
from relaychat.domain.channel_replies import record_sent
from relaychat.domain.channels import (
    DEFAULT_API_BASE_URL,
    channel_token,
    status_callback_url,
)
from relaychat.errors import AppError
from relaychat.storage.models import Channel, OutboxItem
from relaychat.workers.outbox import Attempt, Checkpoint

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
_RESPONSE_KEEP = 2000  # characters of a response body kept in the deliveries log


def messages_url(api_base_url: str, account_sid: str) -> str:
    """Twilio's Messages resource of an account."""
    return f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _twilio_error(response: httpx.Response) -> dict[str, Any]:
    """Twilio's error body (`code`, `message`, `more_info`), or what we can say instead."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("code") or body.get("message")):
        return {
            "code": body.get("code"),
            "message": str(body.get("message") or ""),
            "status": response.status_code,
        }
    return {"code": None, "message": response.reason_phrase, "status": response.status_code}


class TwilioSender:
    """The outbox sender of kind `twilio`."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SecretBox,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.secrets = secrets
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=TIMEOUT_SECONDS)

    async def send(self, item: OutboxItem, checkpoint: Checkpoint) -> Attempt:
        """Send the parts not yet accepted, in order; stop at the first failure."""
        payload: dict[str, Any] = json.loads(item.payload)
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
        last: httpx.Response | None = None
        for index, body in enumerate(payload["parts"]):
            if index in done:
                continue
            form = {
                "To": payload["to"],
                "From": payload["from"],
                "Body": body,
                "StatusCallback": callback,
            }
            try:
                last = await self.http.post(url, data=form, auth=(sid, token))
            except httpx.HTTPError as exc:
                error = {"code": None, "message": f"{type(exc).__name__}: {exc}"}
                return self._failed(payload, error)
            if not last.is_success:
                retry = last.status_code == 429 or last.status_code >= 500
                return self._failed(
                    payload,
                    _twilio_error(last),
                    give_up=not retry,
                    status_code=last.status_code,
                    retry_after=retry_after_seconds(last.headers.get("retry-after"))
                    if retry
                    else None,
                    response_body=last.text[:_RESPONSE_KEEP],
                )
            sent.append({"index": index, **self._accepted(last, index)})
        payload.pop("last_error", None)
        return Attempt(
            True,
            status_code=last.status_code if last is not None else None,
            payload=json.dumps(payload),
            response_body=last.text[:_RESPONSE_KEEP] if last is not None else None,
        )

    @staticmethod
    def _accepted(response: httpx.Response, index: int) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        # Accepted all the same; without a sid its status callbacks just won't match it.
        return {
            "sid": str(body.get("sid") or f"unknown-{index}"),
            "status": str(body.get("status") or "queued"),
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
        error = payload.get("last_error") if status == "failed" else None
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
