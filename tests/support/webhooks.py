"""A webhook receiver on loopback that verifies every delivery with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.factories import TestUser
from tests.support.live import serving


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: str
    verified: bool
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """Records deliveries; answers the scripted responses first, then 200."""

    url: str = ""
    secret: str | None = None
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    # When set, each request is held until the event is set (an attempt in flight).
    hold: asyncio.Event | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _arrival: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_arrival(self, seconds: float = 15) -> None:
        """Until a request has arrived (answered or still held)."""
        async with asyncio.timeout(seconds):
            await self._arrival.wait()

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if 200 <= d.status < 300]

    async def wait_for(self, count: int, *, accepted: bool = False, seconds: float = 15) -> None:
        """Until `count` deliveries (accepted ones, if asked) have arrived."""

        def enough() -> bool:
            return len(self.accepted if accepted else self.deliveries) >= count

        async with asyncio.timeout(seconds), self._arrived:
            await self._arrived.wait_for(enough)

    async def _handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        headers = dict(request.headers)
        self._arrival.set()
        if self.hold is not None:
            await self.hold.wait()
        verified = False
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        status, extra = self.script.pop(0) if self.script else (200, {})
        async with self._arrived:
            self.deliveries.append(
                Delivery(headers.get("webhook-id", ""), headers, body, verified, status)
            )
            self._arrived.notify_all()
        return Response("ok" if status < 300 else "no", status_code=status, headers=extra)


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver._handle, methods=["POST"])])
    async with serving(app) as base:
        receiver.url = f"{base}/hook"
        yield receiver


async def delivery_state(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    hook_id: str,
    delivery_id: str,
    *,
    until: Callable[[dict[str, Any]], bool],
    seconds: float = 15,
) -> dict[str, Any]:
    """The delivery as the API lists it, once `until` holds for it."""
    async with asyncio.timeout(seconds):
        while True:
            listed = await client.get(f"/api/webhooks/{hook_id}/deliveries", headers=headers)
            entry: dict[str, Any] | None = next(
                (e for e in listed.json()["deliveries"] if e["id"] == delivery_id), None
            )
            if entry is not None and until(entry):
                return entry
            await asyncio.sleep(0.02)


async def register(
    client: httpx.AsyncClient, user: TestUser, receiver: Receiver, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/webhooks", json={"url": receiver.url, **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    hook: dict[str, Any] = response.json()["webhook"]
    return hook
