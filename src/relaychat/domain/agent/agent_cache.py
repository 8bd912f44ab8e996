"""A per-process cache of agent definitions, emptied on every worker when one changes."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.agent.agents import AgentSpec
from relaychat.realtime.bus import EventBus
from relaychat.storage.models import Agent

AGENT_CHANGED_SIGNAL = "agent.changed"


class AgentCache:
    """Agent snapshots by id; an update or delete anywhere evicts the entry everywhere.

    The TTL only bounds staleness if a signal is lost (a worker's Redis link was down).
    """

    def __init__(self, bus: EventBus, ttl_seconds: float = 60.0) -> None:
        self.bus = bus
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, AgentSpec | None]] = {}
        self._unsubscribe = bus.on_signal(AGENT_CHANGED_SIGNAL, self._on_changed)

    async def get(self, session: AsyncSession, agent_id: str) -> AgentSpec | None:
        """The agent, from cache or database; None if it does not exist."""
        hit = self._entries.get(agent_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        agent = await session.get(Agent, agent_id)
        spec = AgentSpec.of(agent) if agent is not None else None
        self._entries[agent_id] = (now + self.ttl, spec)
        return spec

    async def changed(self, agent_id: str) -> None:
        """Tell every worker (this one included) to forget the agent."""
        self._entries.pop(agent_id, None)
        await self.bus.signal_committed(AGENT_CHANGED_SIGNAL, {"agent_id": agent_id})

    def close(self) -> None:
        self._unsubscribe()

    def _on_changed(self, payload: dict[str, Any]) -> None:
        agent_id = payload.get("agent_id")
        if isinstance(agent_id, str):
            self._entries.pop(agent_id, None)
