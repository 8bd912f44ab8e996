"""Sends webhook deliveries: a signed POST of the stored body, judged by the status code.

Only 2xx succeeds; redirects are not followed (a 3xx is a failure); 410 Gone disables the
endpoint; 429 and 5xx may carry `Retry-After`. An endpoint that has failed without a
single success for `disable_after_seconds` is disabled, and says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relaychat import __version__
from relaychat.crypto import SecretBox
from relaychat.domain.outbound.webhooks import set_enabled, sign
from relaychat.resources import iso
from relaychat.safehttp import UnsafeTarget, guarded_client
from relaychat.storage.models import OutboxItem, WebhookEndpoint
from relaychat.workers.outbox import Attempt, Checkpoint, parse_retry_after

# How much of a receiver's answer the deliveries log keeps.
logger = logging.getLogger(__name__)

RESPONSE_EXCERPT = 1024


class WebhookSender:
    """Delivers `webhook` outbox items."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SecretBox,
        *,
        allow_private: bool,
        timeout: float,
        disable_after_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.secrets = secrets
        self.disable_after = timedelta(seconds=disable_after_seconds)
        self.timeout = timeout
        self.http = guarded_client(allow_private=allow_private, timeout=timeout)

    async def send(self, item: OutboxItem, checkpoint: Checkpoint) -> Attempt:
        async with self.sessionmaker() as session:
            endpoint = await session.get(WebhookEndpoint, item.target_id)
        if endpoint is None:
            return Attempt(False, error="the endpoint was deleted", give_up=True)
        if not endpoint.enabled:
            return Attempt(
                False,
                error=f"the endpoint is disabled: {endpoint.disabled_reason or 'by its owner'}",
                give_up=True,
            )
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": f"relaychat-webhooks/{__version__}",
            "webhook-id": item.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                self.secrets.decrypt(endpoint.secret_encrypted), item.id, timestamp, item.payload
            ),
        }
        try:
            # One deadline for the whole exchange: httpx's own timeouts are per operation,
            # so a receiver trickling its answer would otherwise hold the attempt forever.
            async with (
                asyncio.timeout(self.timeout),
                self.http.stream(
                    "POST", endpoint.url, content=item.payload.encode(), headers=headers
                ) as response,
            ):
                body = await _excerpt(response)
        except UnsafeTarget as exc:
            return Attempt(False, error=exc.detail, give_up=True)
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(False, error=f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, error=f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            return Attempt(True, status_code=response.status_code, response_body=body)
        return Attempt(
            False,
            status_code=response.status_code,
            error=f"HTTP {response.status_code}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            give_up=response.status_code == 410,
            response_body=body,
        )

    async def settle(
        self, session: AsyncSession, item: OutboxItem, attempt: Attempt, now: datetime
    ) -> None:
        """Track the endpoint's failure streak; disable it on 410 or after days of failing."""
        if attempt.delivered:
            # One statement that usually changes nothing: this runs for every delivery.
            await session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id == item.target_id,
                    WebhookEndpoint.failing_since.is_not(None),
                )
                .values(failing_since=None)
            )
            return
        if attempt.status_code is None and attempt.give_up:
            return  # refused before sending (disabled, deleted, unsafe): not the receiver's fault
        endpoint = await session.get(WebhookEndpoint, item.target_id, with_for_update=True)
        if endpoint is None:
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if not endpoint.enabled:
            return
        if attempt.status_code == 410:
            set_enabled(endpoint, False, f"the receiver answered 410 Gone at {iso(now)}")
        elif now - endpoint.failing_since >= self.disable_after:
            set_enabled(
                endpoint,
                False,
                f"every delivery failed since {iso(endpoint.failing_since)} "
                f"(last: {attempt.error or 'error'})",
            )
        if not endpoint.enabled:
            # An operator's answer to "why did our hook stop firing?" (never its URL: tokens).
            logger.warning(
                "webhook endpoint %s of user %s disabled: %s",
                endpoint.id,
                endpoint.user_id,
                endpoint.disabled_reason,
            )

    async def aclose(self) -> None:
        await self.http.aclose()


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer, for the deliveries log; the rest is never read."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= RESPONSE_EXCERPT:
            break
    return kept[:RESPONSE_EXCERPT].decode(errors="replace")
