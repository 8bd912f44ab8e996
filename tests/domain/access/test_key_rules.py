"""API key rules without a database: permission checks, system-key comparison, cache races."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from relaychat.domain.access import keys
from relaychat.domain.access.key_cache import KeyCache
from relaychat.domain.access.keys import KeyPermissions, PermissionDenied
from relaychat.realtime import MemoryEventBus
from relaychat.storage.models import ApiKey


def test_every_system_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [secrets.token_hex(32) for _ in range(4)]
    configured = keys.system_keys(None, raws)
    calls: list[bytes] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(keys, "hmac", SimpleNamespace(compare_digest=spy))
    # A match on the first key still compares against all: timing says nothing about which.
    assert keys.match_system_key(configured, raws[0]) == configured[0]
    assert len(calls) == 4


def _refused_rule(check: Callable[[], None]) -> str:
    with pytest.raises(PermissionDenied) as caught:
        check()
    problem = caught.value.to_problem()
    assert (caught.value.status, problem["code"]) == (403, "permission_denied")
    assert problem["rule"] in problem["detail"]
    rule: str = problem["rule"]
    return rule


@pytest.mark.parametrize(
    ("patterns", "conversation_id", "allowed"),
    [
        (None, "anything-at-all", True),
        ([], "sms-1", False),
        (["sms-*"], "sms-+15551234567", True),
        (["sms-*"], "SMS-+15551234567", False),
        (["sms-*"], "web-sms-1", False),
        (["sms-*", "wa-+1???"], "wa-+1555", True),
        (["wa-+1???"], "wa-+15555", False),
        (["5c79d482-9b80-45f6-bbf2-9abe17335e55"], "5c79d482-9b80-45f6-bbf2-9abe17335e55", True),
    ],
)
def test_conversation_patterns(
    patterns: list[str] | None, conversation_id: str, allowed: bool
) -> None:
    perms = KeyPermissions(allowed_conversations=patterns)
    if allowed:
        keys.check_conversation(perms, conversation_id)
    else:
        assert _refused_rule(lambda: keys.check_conversation(perms, conversation_id)) == (
            "allowed_conversations"
        )


@pytest.mark.parametrize(
    ("metadata", "missing"),
    [
        ({"phoneNumber": "+15551234567", "source": "sms"}, []),
        ({"phoneNumber": 5551234567, "source": "sms", "extra": 1}, []),
        ({"phoneNumber": "+15551234567"}, ["source"]),
        ({"phoneNumber": "  ", "source": "sms"}, ["phoneNumber"]),
        ({"phoneNumber": None, "source": []}, ["phoneNumber", "source"]),
        ({}, ["phoneNumber", "source"]),
        (None, ["phoneNumber", "source"]),
    ],
)
def test_required_metadata(metadata: dict[str, Any] | None, missing: list[str]) -> None:
    perms = KeyPermissions(required_metadata=["phoneNumber", "source"])
    if not missing:
        keys.check_metadata(perms, metadata)
        return
    with pytest.raises(PermissionDenied) as caught:
        keys.check_metadata(perms, metadata)
    assert caught.value.fields == {"rule": "required_metadata", "missing": missing}
    keys.check_metadata(KeyPermissions(), metadata)  # nothing required, nothing refused


def test_endpoint_agent_respond_and_create_rules() -> None:
    open_perms = KeyPermissions()
    keys.check_endpoint(open_perms, "anything")
    keys.check_agent(open_perms, "agent_x")
    keys.check_respond(open_perms)
    assert _refused_rule(lambda: keys.check_create(open_perms)) == "can_create_conversations"

    perms = KeyPermissions(
        allowed_endpoints=["openai"],
        allowed_agents=["agent_a"],
        can_respond=False,
        can_create_conversations=True,
    )
    keys.check_endpoint(perms, "openai")
    keys.check_agent(perms, "agent_a")
    keys.check_create(perms)
    assert _refused_rule(lambda: keys.check_endpoint(perms, "anthropic")) == "allowed_endpoints"
    assert _refused_rule(lambda: keys.check_agent(perms, "agent_b")) == "allowed_agents"
    assert _refused_rule(lambda: keys.check_respond(perms)) == "can_respond"
    # A key that may not trigger replies never asks for one by default.
    assert perms.respond_default is False
    assert KeyPermissions(respond_default=False).respond_default is False


def test_rate_limit_rule_and_invalid_permissions() -> None:
    item = KeyPermissions(rate_limit={"requests": 100, "window": 60}).rate_limit
    assert item is not None
    assert (item.item().amount, item.item().get_expiry()) == (100, 60)
    for bad in (
        {"rate_limit": {"requests": 0, "window": 60}},
        {"rate_limit": {"requests": 10, "window": 0}},
        {"rate_limit": {"requests": 10}},
        {"allowed_conversations": [""]},
        {"can_fly": True},
    ):
        with pytest.raises(ValidationError):
            KeyPermissions.model_validate(bad)


async def test_a_load_racing_an_eviction_is_not_cached() -> None:
    """A row read before a revocation must not be cached after the eviction that follows."""

    def row(revoked: bool) -> ApiKey:
        now = datetime.now(UTC)
        return ApiKey(
            id="k1",
            lookup="0123456789ab",
            name="k",
            user_id="u1",
            system=False,
            secret_hash="0" * 64,
            permissions={},
            created_at=now,
            revoked_at=now if revoked else None,
        )

    class SlowSession:
        def __init__(self, result: ApiKey, gate: asyncio.Event) -> None:
            self.result, self.gate = result, gate

        async def execute(self, _query: object) -> SimpleNamespace:
            await self.gate.wait()
            # The key and its owner's `disabled_at`, as the cache's query returns them.
            return SimpleNamespace(first=lambda: (self.result, None))

    bus = MemoryEventBus()
    cache = KeyCache(bus, None, ttl_seconds=3600)  # type: ignore[arg-type]
    gate = asyncio.Event()
    loading = asyncio.create_task(cache.get(SlowSession(row(False), gate), "0123456789ab"))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    cache.forget("0123456789ab")  # the revocation's signal arrives mid-read
    gate.set()
    stale = await loading
    assert stale is not None and stale.revoked_at is None
    fresh = await cache.get(SlowSession(row(True), gate), "0123456789ab")  # type: ignore[arg-type]
    assert fresh is not None and fresh.revoked_at is not None
    await cache.close()
