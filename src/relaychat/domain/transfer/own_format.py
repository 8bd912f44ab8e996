"""relaychat's own JSON: one conversation with its whole tree, exactly as it is stored.

A document is `{"format": "relaychat.conversation", "version": 1, "conversation": {...},
"messages": [...]}`; the conversation and each message are the API's `ConversationOut` and
`MessageView` (plus the message's `updated_at`), so everything a row holds travels: ids, the
tree, every role (`external` too), status, metadata, tool steps in `content`, token counts.
An export of many (`relaychat.export`) lists such documents under `conversations`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from relaychat.domain.transfer.drafts import (
    ConversationInvalid,
    DraftConversation,
    DraftMessage,
    utc,
)
from relaychat.resources import ConversationOut, MessageView

FORMAT = "relaychat.conversation"
BULK_FORMAT = "relaychat.export"
VERSION = 1


class ExportedConversation(ConversationOut):
    """The conversation's fields; `unseen_external` is the exporter's state, not read back."""

    unseen_external: int = 0


class ExportedMessage(MessageView):
    """A message with every column but its conversation's internal bookkeeping."""

    updated_at: datetime | None = None


class ConversationDocument(BaseModel):
    """One exported conversation: the file `GET /api/convos/{id}/export` answers with."""

    format: Literal["relaychat.conversation"] = "relaychat.conversation"
    version: Literal[1] = 1
    exported_at: datetime | None = None
    conversation: ExportedConversation
    messages: list[ExportedMessage] = Field(description="Every message, oldest first.")


class ExportFile(BaseModel):
    """All of a person's conversations (`GET /api/convos/export`, `relaychat export`);
    written one conversation at a time, never built whole like this."""

    format: Literal["relaychat.export"] = "relaychat.export"
    version: Literal[1] = 1
    exported_at: datetime
    conversations: list[ConversationDocument] = Field(description="Oldest first.")


def document(conversation: Any, messages: list[Any], exported_at: datetime) -> ConversationDocument:
    """The document of a conversation row and its message rows (entities or Core rows)."""
    return ConversationDocument(
        exported_at=exported_at,
        conversation=ExportedConversation.model_validate(conversation),
        messages=[ExportedMessage.model_validate(m) for m in messages],
    )


def is_document(item: Any) -> bool:
    return isinstance(item, dict) and item.get("format") == FORMAT


def read(item: Any) -> DraftConversation:
    """A draft of one of our documents; ConversationInvalid names the first bad field."""
    try:
        parsed = ConversationDocument.model_validate(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "conversation"
        raise ConversationInvalid(f"{where}: {first['msg']}", field=where) from exc
    convo = parsed.conversation
    return DraftConversation(
        id=convo.conversation_id,
        title=convo.title,
        created_at=utc(convo.created_at),
        updated_at=utc(convo.updated_at),
        endpoint=convo.endpoint,
        model=convo.model,
        agent_id=convo.agent_id,
        model_parameters=convo.model_parameters,
        system_prompt=convo.system_prompt,
        archived=convo.archived,
        messages=[
            DraftMessage(
                id=m.message_id,
                parent_id=m.parent_message_id,
                role=m.role,
                sender=m.sender,
                content=m.content,
                text=m.text,
                status=m.status,
                error=m.error,
                endpoint=m.endpoint,
                model=m.model,
                finish_reason=m.finish_reason,
                prompt_tokens=m.prompt_tokens,
                completion_tokens=m.completion_tokens,
                tokens_estimated=m.tokens_estimated,
                metadata=m.metadata,
                api_key_id=m.api_key_id,
                created_at=utc(m.created_at),
                updated_at=utc(m.updated_at) if m.updated_at else None,
            )
            for m in parsed.messages
        ],
    )
