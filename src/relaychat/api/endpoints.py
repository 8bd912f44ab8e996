"""The LLM endpoints this server offers, and their models (never a key or address)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from relaychat.http.deps import CurrentUser, ServicesDep
from relaychat.llm.registry import EndpointInfo

router = APIRouter(prefix="/api/endpoints", tags=["endpoints"])


class EndpointList(BaseModel):
    endpoints: list[EndpointInfo]


@router.get("")
async def list_endpoints(_user: CurrentUser, services: ServicesDep) -> EndpointList:
    """Configured endpoints with their models (fetched and cached where configured)."""
    return EndpointList(endpoints=await services.providers.list_endpoints())
