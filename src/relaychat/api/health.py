"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from relaychat.api.deps import ServicesDep
from relaychat.storage.db import ping

router = APIRouter(tags=["health"])

_PROBE_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse:
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
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
