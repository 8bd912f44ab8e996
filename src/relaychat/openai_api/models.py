"""GET /v1/models: what the caller may use, under the key's `allowed_endpoints` and
`allowed_agents` (a person: every endpoint and the agents they can see)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from openai.types import Model
from pydantic import BaseModel

from relaychat.domain.openai_compat import catalog
from relaychat.domain.openai_compat.catalog import ModelEntry
from relaychat.openai_api.callers import Caller, answer_headers, finish_audit, services_of
from relaychat.statuses import AuditOutcome

router = APIRouter(tags=["openai"])


class ModelList(BaseModel):
    object: str = "list"
    data: list[Model]


def _model(entry: ModelEntry) -> Model:
    # Endpoint models have no creation time here: 0, as some OpenAI-compatible servers say.
    created = int(entry.created.timestamp()) if entry.created else 0
    return Model(id=entry.id, object="model", created=created, owned_by=entry.owned_by)


@router.get("/models")
async def list_models(request: Request, response: Response, caller: Caller) -> ModelList:
    """Agents by id and endpoint models as `<endpoint>/<model>`."""
    services = services_of(request)
    async with services.sessionmaker() as session:
        entries = await catalog.list_models(session, services.providers, caller)
    finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
    response.headers.update(answer_headers(request))
    return ModelList(data=[_model(entry) for entry in entries])


@router.get("/models/{model:path}")
async def get_model(model: str, request: Request, response: Response, caller: Caller) -> Model:
    """One model the caller may use; 404 `model_not_found` otherwise."""
    services = services_of(request)
    target = await catalog.resolve(
        services.sessionmaker, services.providers, services.chat.agents, caller, model
    )
    finish_audit(request, status=200, outcome=AuditOutcome.ACCEPTED)
    response.headers.update(answer_headers(request))
    return Model(id=target.name, object="model", created=0, owned_by=target.endpoint)
