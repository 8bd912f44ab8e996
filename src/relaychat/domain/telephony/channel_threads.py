"""A channel's conversations: one thread per channel and sender, held by whom the channel says.

A thread's id is the source, the sender's E.164 number and the first 12 hex digits of the
channel's id: `sms-+14155552671.3f2a9c1b7d4e` (or `whatsapp-+14155552671.3f2a9c1b7d4e`).
Two channels writing to one number therefore keep two threads, and a channel's principal
may reach only its own (`thread_patterns`).

Only the channel may create its thread ids (conversation_ids.check_claim), but a thread
may be held from before that rule: the channel computes who must own the thread (its
owner, or the user with the sender's number) and refuses a thread someone else holds
(`ChannelThreadTaken`), rather than storing the sender's message, and sending a reply, in a
stranger's conversation.
"""

from __future__ import annotations

from relaychat.errors import Conflict, ErrorCode

SOURCES = ("sms", "whatsapp")
TAG_LENGTH = 12


class ChannelThreadTaken(Conflict):
    code = ErrorCode.CHANNEL_THREAD_TAKEN
    title = "The channel's conversation for this sender belongs to another user"


def channel_tag(channel_id: str) -> str:
    """The part of a thread id that names the channel: its id's first 12 hex digits."""
    return channel_id.replace("-", "").lower()[:TAG_LENGTH]


def thread_id(channel_id: str, source: str, phone: str) -> str:
    """The conversation of one sender (E.164 `phone`) on one channel."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    return f"{source}-{phone}.{channel_tag(channel_id)}"


def thread_patterns(channel_id: str) -> list[str]:
    """The conversations a channel may open: its own threads, of any sender."""
    return [f"{source}-+*.{channel_tag(channel_id)}" for source in SOURCES]


def check_thread_owner(conversation_id: str, holder: str | None, owner: str | None) -> None:
    """Refuse a thread that exists and is not held by `owner` (None: a user not yet made)."""
    if holder is not None and holder != owner:
        raise ChannelThreadTaken(
            f"conversation {conversation_id} exists and belongs to another user; "
            "the message was not stored"
        )
