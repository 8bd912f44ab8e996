"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from relaychat.http.deps import ServicesDep
from relaychat.storage.db import ping

router = APIRouter(tags=["health"])

_PROBE_TIMEOUT = 3.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(
        description="Each dependency (`database`, `redis`): `ok` or `error: <kind>`."
    )


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={503: {"description": "A dependency does not answer", "model": Readiness}},
)
async def readyz(services: ServicesDep, response: Response) -> Readiness:
    """The database answers, and Redis too when configured; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ping(services.engine), _PROBE_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"error: {type(exc).__name__}"
    if services.redis is not None:
        try:
            await asyncio.wait_for(services.redis.ping(), _PROBE_TIMEOUT)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return Readiness(status="ready", checks=checks)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="unavailable", checks=checks)
