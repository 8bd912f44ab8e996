"""gateway.request_audit.finish: the row and the metrics of a machine caller's request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from relaychat.gateway.request_audit import RequestAudit, finish
from relaychat.metrics import REGISTRY
from relaychat.services import Services
from relaychat.storage.models import Channel

MESSAGES = "relaychat_external_messages_total"
SECONDS = "relaychat_external_processing_seconds_count"


@dataclass
class _Writer:
    rows: list[Any] = field(default_factory=list)

    def add_values(self, values: dict[str, Any]) -> None:
        self.rows.append(SimpleNamespace(**values))


@dataclass
class _Services:
    audit: _Writer = field(default_factory=_Writer)


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _audit(**fields: Any) -> RequestAudit:
    return RequestAudit(time.perf_counter(), "POST", "/x", "10.0.0.1", **fields)


def test_a_channel_request_is_audited_under_the_channel_and_not_timed() -> None:
    services = _Services()
    channel = Channel(id="ch-audit-1", user_id="manager-1")
    audit = _audit(channel=channel, conversation_id="c1", strategy="provisioned")
    label = {"outcome": "accepted", "key": "ch:chaudit1"}
    before = (_sample(MESSAGES, label), _sample(SECONDS))
    finish(cast(Services, services), audit, status=200, outcome="accepted")
    assert (_sample(MESSAGES, label) - before[0], _sample(SECONDS) - before[1]) == (1, 0)
    [row] = services.audit.rows
    assert (row.api_key_id, row.key_owner_id, row.conversation_id, row.strategy) == (
        "ch:chaudit1",
        "manager-1",
        "c1",
        "provisioned",
    )


def test_an_unwritten_refusal_is_counted_not_written() -> None:
    services = _Services()
    audit = _audit(recorded=False)
    label = {"outcome": "refused", "key": "none"}
    before = (_sample(MESSAGES, label), _sample(SECONDS))
    finish(cast(Services, services), audit, status=429, outcome="refused", reason="x")
    assert (_sample(MESSAGES, label) - before[0], _sample(SECONDS) - before[1]) == (1, 0)
    assert services.audit.rows == []


def test_a_key_request_is_timed_and_written() -> None:
    services = _Services()
    before = _sample(SECONDS)
    finish(cast(Services, services), _audit(), status=401, outcome="refused", reason="r")
    assert _sample(SECONDS) - before == 1
    [row] = services.audit.rows
    assert (row.method, row.path, row.status, row.reason, row.api_key_id) == (
        "POST",
        "/x",
        401,
        "r",
        None,
    )
