"""The page of a share link, `GET /s/{token}`: a read-only snapshot anyone with the link
may open without signing in.

Rendered on the server from the snapshot alone (nothing of the live conversation is
read), with the UI's stylesheet and the UI's headers: the same Content-Security-Policy,
and no script at all. Search engines are told not to index it (`X-Robots-Tag` and the
robots meta tag), and `Referrer-Policy: no-referrer` keeps the link out of the Referer of
any link followed from the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from relaychat.domain.sharing.shares import SharedPage, ShareNotFound, open_share
from relaychat.http.deps import SessionDep
from relaychat.markdown import render_parts
from relaychat.statuses import MessageRole, MessageStatus
from relaychat.storage.models import SharedMessage
from relaychat.web.pages import PAGE_HEADERS, templates

router = APIRouter(include_in_schema=False)

# The link is the credential: an access log that kept it would let its readers in.

SHARED_PAGE_HEADERS = {**PAGE_HEADERS, "X-Robots-Tag": "noindex"}
_STATUS_NOTES = {
    MessageStatus.STREAMING: "Still being written when shared",
    MessageStatus.UNFINISHED: "Stopped before the end",
    MessageStatus.ERROR: "Failed",
}


def _view(message: SharedMessage) -> dict[str, object]:
    """What the template shows of one message; only a reply's markdown becomes HTML, and
    only through relaychat.markdown (as the chat shows it)."""
    facts: list[str] = []
    if message.role == MessageRole.EXTERNAL:
        if message.source and message.source != message.author:
            facts.append(f"via {message.source}")
        if message.phone_number:
            facts.append(message.phone_number)
        if message.key_name:
            facts.append(
                message.key_name
                if message.key_name in ("system key", "API key")
                else f"key “{message.key_name}”"
            )
    elif message.role == MessageRole.ASSISTANT and message.model not in (None, message.author):
        facts.append(str(message.model))
    html = None
    if message.role == MessageRole.ASSISTANT:
        html = render_parts(message.content or [], message.text or "")
    return {
        "role": str(message.role),
        "author": message.author,
        "facts": " · ".join(facts),
        "html": html,
        "text": message.text,
        "note": _STATUS_NOTES.get(message.status),
        "created_at": message.created_at,
    }


def _page(request: Request, shared: SharedPage) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "shared.html",
        {
            "title": shared.share.title or "Shared conversation",
            "shared_at": shared.share.created_at,
            "messages": [_view(m) for m in shared.messages],
        },
        headers=SHARED_PAGE_HEADERS,
    )


@router.get("/s/{token}", response_class=HTMLResponse, name="shared_page")
async def shared_page(
    request: Request,
    session: SessionDep,
    # Unbounded: anything that is not a token's shape is the same 404 page (shares.py).
    token: Annotated[str, PathParam()],
) -> HTMLResponse:
    """A shared conversation, read-only; 404 once the link is revoked or the conversation
    deleted."""
    try:
        shared = await open_share(session, token)
    except ShareNotFound:
        return templates.TemplateResponse(
            request, "shared_missing.html", {}, status_code=404, headers=SHARED_PAGE_HEADERS
        )
    return _page(request, shared)
