"""The entities' tables, for statements built once and run without the ORM: the hot paths
(a message posted, a reply started and ended, the gateway's group commit) use these."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from relaychat.storage.models import (
    AuditEvent,
    Conversation,
    Generation,
    Message,
    OutboxItem,
    ReplyUsage,
    WebhookEndpoint,
)

# A mapped class's `__table__` is typed as a FromClause; for these it is a Table.
AUDIT_EVENTS = cast(Table, AuditEvent.__table__)
CONVERSATIONS = cast(Table, Conversation.__table__)
GENERATIONS = cast(Table, Generation.__table__)
MESSAGES = cast(Table, Message.__table__)
OUTBOX = cast(Table, OutboxItem.__table__)
REPLY_USAGE = cast(Table, ReplyUsage.__table__)
WEBHOOK_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
