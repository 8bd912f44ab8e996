"""The audit row and metrics of a machine caller's request (an API key, or a channel's webhook).

Each front fills one `RequestAudit` as its request goes and ends it with `finish`: every
outcome (accepted, replayed, refused) leaves one row, written in the background by the
audit writer, and one count in `relaychat_external_messages`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from relaychat import logs
from relaychat.domain.access import keys
from relaychat.domain.access.audit import audit_values
from relaychat.domain.telephony import channels
from relaychat.metrics import EXTERNAL_MESSAGES, EXTERNAL_SECONDS
from relaychat.services import Services
from relaychat.statuses import AuditOutcome
from relaychat.storage.models import Channel


@dataclass
class RequestAudit:
    """What the audit row of this request will say, filled in as the request goes."""

    started: float
    method: str
    path: str
    client: str | None
    principal: keys.KeyPrincipal | None = None
    # A refused (revoked, expired) key is still named in the audit, for its owner to see.
    refused_key: keys.KeyRefused | None = None
    # A channel's webhook is audited under the channel (its ref as the key, its manager
    # as the key's owner).
    channel: Channel | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    strategy: str | None = None
    message_id: str | None = None
    # False for a refusal past the unauthenticated limit: counted, not written (refusals.py).
    recorded: bool = True
    # True once the row was committed with the message it audits (the group-commit
    # writer); set by the front when that write succeeded.
    stored: bool = False
    # Read while the request is served: the group-commit writer builds the row in a task
    # of its own, which serves many requests.
    request_id: str | None = None

    @classmethod
    def of(cls, request: Request, *, conversation_id: str | None = None) -> RequestAudit:
        return cls(
            started=time.perf_counter(),
            method=request.method,
            path=request.scope["path"],  # not request.url: that parses the whole URL
            client=request.client.host if request.client else None,
            conversation_id=conversation_id,
            request_id=logs.current_request_id(),
        )

    @property
    def key_label(self) -> str:
        """The `key` label of the metrics: the authenticated key (or channel), else "none"."""
        if self.channel is not None:
            return channels.channel_ref(self.channel.id)
        return self.principal.key_ref if self.principal else "none"

    def values(self, *, status: int, outcome: str, reason: str | None = None) -> dict[str, Any]:
        """The audit row's column values as they stand now."""
        api_key_id, key_owner_id = self.key_columns()
        return audit_values(
            method=self.method,
            path=self.path,
            outcome=outcome,
            status=status,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            api_key_id=api_key_id,
            key_owner_id=key_owner_id,
            client_address=self.client,
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            strategy=self.strategy,
            reason=reason,
            message_id=self.message_id,
            request_id=self.request_id,
        )

    def key_columns(self) -> tuple[str | None, str | None]:
        """The row's key id and key owner."""
        if self.channel is not None:
            return channels.channel_ref(self.channel.id), self.channel.user_id
        if self.principal is not None:
            return self.principal.key_ref, self.principal.owner_id
        if self.refused_key is not None:
            return self.refused_key.key_id, self.refused_key.owner_id
        return None, None


def finish(
    services: Services,
    audit: RequestAudit,
    *,
    status: int,
    outcome: str,
    reason: str | None = None,
) -> None:
    """Count the request and, unless `audit.recorded` is off or the row is already
    stored, queue its audit row.

    `outcome` is an `AuditOutcome` (typed `str` while the channel fronts still pass literals).
    """
    EXTERNAL_MESSAGES.labels(outcome, audit.key_label).inc()
    if not audit.recorded:
        return
    latency = time.perf_counter() - audit.started
    if audit.channel is None:
        # The histogram times the external message API; webhooks were never in it.
        EXTERNAL_SECONDS.observe(latency)
    if not audit.stored:
        services.audit.add_values(audit.values(status=status, outcome=outcome, reason=reason))


def stored_with_message(
    audit: RequestAudit, *, status: int
) -> Callable[[str, str, str], dict[str, Any]]:
    """The accepted request's audit row, built for the writer that stores it together
    with its message: called with the message's id, its owner and how it was found."""

    def row(message_id: str, user_id: str, strategy: str) -> dict[str, Any]:
        audit.message_id, audit.user_id, audit.strategy = message_id, user_id, strategy
        return audit.values(status=status, outcome=AuditOutcome.ACCEPTED)

    return row
