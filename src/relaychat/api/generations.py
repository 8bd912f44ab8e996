"""Generations: read their state, abort them from any worker."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status

from relaychat.domain.answering.generations import get_owned_generation, request_abort
from relaychat.http.deps import CurrentUser, EngineDep, ServicesDep, SessionDep
from relaychat.resources import GenerationOut
from relaychat.statuses import GenerationStatus

router = APIRouter(prefix="/api/generations", tags=["generations"])

# How long an abort waits for the worker running the generation to confirm.
_ABORT_WAIT_SECONDS = 5.0
_POLL_SECONDS = 0.05


@router.get("/{generation_id}")
async def get(generation_id: str, user: CurrentUser, session: SessionDep) -> GenerationOut:
    """The generation's state."""
    return GenerationOut.model_validate(await get_owned_generation(session, user.id, generation_id))


@router.post("/{generation_id}/abort")
async def abort(
    generation_id: str,
    user: CurrentUser,
    services: ServicesDep,
    engine: EngineDep,
    response: Response,
) -> GenerationOut:
    """Stop a running generation, keeping its partial text (status `unfinished`).

    200 with the final state once the worker running it confirms; 202 if it has not
    within a few seconds (the stop still happens). Aborting a finished one changes nothing.
    """
    async with services.sessionmaker() as session:
        generation = await get_owned_generation(session, user.id, generation_id)
    await request_abort(engine.bus, generation)
    deadline = asyncio.get_running_loop().time() + _ABORT_WAIT_SECONDS
    while generation.status == GenerationStatus.RUNNING:
        if asyncio.get_running_loop().time() > deadline:
            response.status_code = status.HTTP_202_ACCEPTED
            break
        await asyncio.sleep(_POLL_SECONDS)
        async with services.sessionmaker() as session:
            generation = await get_owned_generation(session, user.id, generation_id)
    return GenerationOut.model_validate(generation)
