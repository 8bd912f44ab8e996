"""The doctor for admins: `relaychat doctor`'s checks, run by this server process with its
own endpoints, MCP servers and stores (GET /api/admin/doctor)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from relaychat.domain.operations.doctor import Status, examine
from relaychat.http.deps import AdminUser, ServicesDep

router = APIRouter(prefix="/api/admin/doctor", tags=["admin"])


class CheckOut(BaseModel):
    area: str
    name: str
    status: Status
    detail: str


class DoctorReport(BaseModel):
    verdict: Status
    checks: list[CheckOut]


@router.get("")
async def report(_admin: AdminUser, services: ServicesDep) -> DoctorReport:
    """Settings, database, Redis, each endpoint (its models listed with its key), each MCP
    server, webhook targets, Twilio channels and disk, as this process sees them; `verdict`
    is the worst."""
    found = await examine(
        services.settings, services.engine, services.providers, services.mcp, services.secrets
    )
    return DoctorReport(
        verdict=found.verdict,
        checks=[
            CheckOut(area=c.area, name=c.name, status=c.status, detail=c.detail)
            for c in found.checks
        ],
    )
