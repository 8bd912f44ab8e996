"""Share links of the signed-in user's conversations: make, list, revoke.

The shared page itself (`GET /s/{token}`, no sign-in) is the web UI's: relaychat.web.shared.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from relaychat.domain.sharing import shares
from relaychat.http.deps import CurrentUser, OwnedConversation, SessionDep
from relaychat.storage.models import Share

router = APIRouter(tags=["shares"])


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(
        None,
        max_length=64,
        description="The last message to share, with the branch above it; default: the "
        "branch the chat shows (the newest reply at every fork).",
    )
    include_phone_numbers: bool = Field(
        False, description="Show external senders' phone numbers (`metadata.phoneNumber`)."
    )
    include_key_names: bool = Field(
        False, description="Show the names of the API keys external messages came with."
    )


class ShareOut(BaseModel):
    """A share link as its owner lists it (the token is not kept: only its first characters)."""

    share_id: str
    conversation_id: str
    title: str | None = Field(description="The conversation's title when it was shared.")
    message_id: str = Field(description="The last message of the shared branch.")
    message_count: int
    include_phone_numbers: bool
    include_key_names: bool
    token_hint: str = Field(description="The first characters of the link's token.")
    created_at: datetime

    @classmethod
    def of(cls, share: Share) -> ShareOut:
        return cls(
            share_id=share.id,
            conversation_id=share.conversation_id,
            title=share.title,
            message_id=share.message_id,
            message_count=share.message_count,
            include_phone_numbers=share.include_phone_numbers,
            include_key_names=share.include_key_names,
            token_hint=share.token_hint,
            created_at=share.created_at,
        )


class ShareCreated(ShareOut):
    token: str = Field(description="The link's secret: shown this once, never stored.")
    url: str = Field(description="The read-only page anyone with the link may open.")


class ShareList(BaseModel):
    shares: list[ShareOut]


@router.post("/api/convos/{conversation_id}/shares", status_code=status.HTTP_201_CREATED)
async def create(
    body: ShareCreate,
    conversation: OwnedConversation,
    session: SessionDep,
    request: Request,
) -> ShareCreated:
    """Snapshot the branch up to a message and make a read-only link to it (`/s/{token}`).

    Messages written later never appear on the page. External senders' phone numbers and
    key names are left out unless asked for. The link is in this answer only.
    """
    made = await shares.create_share(
        session,
        conversation,
        message_id=body.message_id,
        include_phone_numbers=body.include_phone_numbers,
        include_key_names=body.include_key_names,
    )
    url = str(request.url_for("shared_page", token=made.token))
    return ShareCreated(**ShareOut.of(made.share).model_dump(), token=made.token, url=url)


@router.get("/api/convos/{conversation_id}/shares")
async def list_for_conversation(
    conversation: OwnedConversation, user: CurrentUser, session: SessionDep
) -> ShareList:
    """The conversation's share links, newest first."""
    found = await shares.list_shares(session, user.id, conversation_id=conversation.id)
    return ShareList(shares=[ShareOut.of(s) for s in found])


@router.get("/api/shares")
async def list_(user: CurrentUser, session: SessionDep) -> ShareList:
    """All your share links, newest first."""
    found = await shares.list_shares(session, user.id)
    return ShareList(shares=[ShareOut.of(s) for s in found])


@router.delete("/api/shares/{share_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(
    share_id: Annotated[str, PathParam(max_length=64)],
    user: CurrentUser,
    session: SessionDep,
) -> None:
    """Revoke a share link: its snapshot is deleted and its page is 404 from now on."""
    await shares.revoke_share(session, user.id, share_id)
