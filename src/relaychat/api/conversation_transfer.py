"""Export and import of the signed-in user's conversations (files, not resources)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from relaychat.domain.transfer import exporting, importing
from relaychat.domain.transfer.formats import recognise
from relaychat.domain.transfer.own_format import ConversationDocument, ExportFile
from relaychat.errors import ErrorCode, PayloadTooLarge
from relaychat.http.deps import (
    CurrentUser,
    EngineDep,
    OwnedConversation,
    ServicesDep,
    SessionDep,
    SettingsDep,
)
from relaychat.storage.types import utcnow

router = APIRouter(prefix="/api/convos", tags=["conversations"])

IMPORT_PATH = "/api/convos/import"


class _FromDomain(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ImportedOut(_FromDomain):
    conversation_id: str
    source_id: str | None
    title: str | None
    messages: int
    renamed: bool


class RefusedOut(_FromDomain):
    index: int
    source_id: str | None
    title: str | None
    code: ErrorCode
    detail: str
    field: str | None


class ImportReportOut(_FromDomain):
    format: Literal["relaychat", "librechat", "chatgpt"]
    imported: list[ImportedOut]
    refused: list[RefusedOut]


def _attachment(name: str) -> dict[str, str]:
    # Conversation ids hold only `A-Za-z0-9._:@+-`: nothing to escape in a quoted name.
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/export", response_model=ExportFile)
async def export_all(user: CurrentUser, services: ServicesDep) -> StreamingResponse:
    """All of your conversations as one JSON file (`relaychat.export`), streamed as written."""
    user_id = user.id

    async def body() -> AsyncIterator[bytes]:
        # Its own session: the request's ends when the route returns, before the body is sent.
        async with services.sessionmaker() as session:
            async for chunk in exporting.export_all(session, user_id):
                yield chunk

    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        body(),
        media_type="application/json",
        headers=_attachment(f"relaychat-export-{stamp}.json"),
    )


@router.get(
    "/{conversation_id}/export",
    response_model=ConversationDocument,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def export_one(
    conversation: OwnedConversation,
    session: SessionDep,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Response:
    """One conversation: `json`, the whole tree with metadata and tool steps (importable);
    `markdown`, the branch the UI shows, for reading."""
    if format == "markdown":
        text = await exporting.conversation_markdown(session, conversation)
        return Response(
            text,
            media_type="text/markdown; charset=utf-8",
            headers=_attachment(f"relaychat-{conversation.id}.md"),
        )
    document = await exporting.conversation_document(session, conversation)
    return Response(
        document.model_dump_json(),
        media_type="application/json",
        headers=_attachment(f"relaychat-{conversation.id}.json"),
    )


@router.post(IMPORT_PATH.removeprefix("/api/convos"))
async def import_(
    file: Annotated[
        UploadFile,
        File(description="relaychat's export, a LibreChat export, or ChatGPT's conversations.json"),
    ],
    user: CurrentUser,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> ImportReportOut:
    """Import conversations, each whole or not at all; the report says which were imported
    (with their ids here) and which were refused and why. Nothing is overwritten."""
    data = await file.read(settings.import_max_bytes + 1)
    if len(data) > settings.import_max_bytes:
        raise PayloadTooLarge(
            f"the file exceeds {settings.import_max_bytes} bytes (IMPORT_MAX_BYTES)",
            limit=settings.import_max_bytes,
        )
    # Parsing megabytes of JSON takes a while: not on the event loop, other requests wait on it.
    upload = await run_in_threadpool(recognise, data, settings.import_max_conversations)
    report = await importing.import_file(
        session, engine.bus, user, upload, max_messages=settings.import_max_messages
    )
    return ImportReportOut.model_validate(report)
