"""Channels: manage Twilio numbers (users' JWT). Twilio's own webhooks (signed forms) are
the gateway's, under /api/channels/twilio/ (relaychat.gateway.channels.twilio.routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from relaychat.domain.telephony import channel_log, channels
from relaychat.domain.telephony.channel_log import ChannelMessageOut
from relaychat.domain.telephony.channels import ChannelOut, TwilioChannelIn, TwilioChannelPatch
from relaychat.http.deps import CurrentUser, ServicesDep, SessionDep

router = APIRouter(prefix="/api/channels", tags=["channels"])

ChannelId = Annotated[str, Path(max_length=64)]


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class ChannelMessageList(BaseModel):
    messages: list[ChannelMessageOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: TwilioChannelIn, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> ChannelOut:
    """Create a channel you manage; paste its `webhook_url` into Twilio's console."""
    channel = await channels.create_channel(
        session, user, body, services.secrets, endpoints=services.providers.names()
    )
    return ChannelOut.from_row(channel)


@router.get("")
async def list_(
    user: CurrentUser,
    session: SessionDep,
    all_users: Annotated[
        bool, Query(alias="all", description="Every user's channels (admins).")
    ] = False,
) -> ChannelList:
    """The channels you manage, newest first."""
    rows = await channels.list_channels(session, user, all_users=all_users)
    return ChannelList(channels=[ChannelOut.from_row(c) for c in rows])


@router.get("/{channel_id}")
async def get(channel_id: ChannelId, user: CurrentUser, session: SessionDep) -> ChannelOut:
    """One of your channels (any, for admins); never its auth token."""
    return ChannelOut.from_row(await channels.get_channel(session, user, channel_id))


@router.get("/{channel_id}/messages")
async def messages(
    channel_id: ChannelId,
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ChannelMessageList:
    """What came in through one of your channels and what went out, newest first: numbers,
    a preview of the text, and each reply's delivery state as Twilio reported it."""
    channel = await channels.get_channel(session, user, channel_id)
    page = await channel_log.list_channel_messages(
        session, user, channel, limit=limit, cursor=cursor
    )
    return ChannelMessageList(messages=page.messages, next_cursor=page.next_cursor)


@router.patch("/{channel_id}")
async def patch(
    channel_id: ChannelId,
    body: TwilioChannelPatch,
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
) -> ChannelOut:
    """Change a channel: a new `auth_token` replaces the stored one; `enabled: false` pauses it."""
    channel = await channels.get_channel(session, user, channel_id)
    updated = await channels.update_channel(
        session, user, channel, body, services.secrets, endpoints=services.providers.names()
    )
    return ChannelOut.from_row(updated)


@router.delete("/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(channel_id: ChannelId, user: CurrentUser, session: SessionDep) -> Response:
    """Delete a channel; its replies not yet sent are cancelled."""
    await channels.delete_channel(session, await channels.get_channel(session, user, channel_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
