"""The long-lived objects of one process, built from Settings, started and closed by the app."""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from relaychat.clock import Clock
from relaychat.crypto import SecretBox
from relaychat.domain.access.key_cache import KeyCache
from relaychat.domain.access.keys import system_keys_from_settings
from relaychat.domain.accounts.standing import StandingCache
from relaychat.domain.accounts.tokens import AccessTokens
from relaychat.domain.agent.agent_cache import AgentCache
from relaychat.domain.agent.toolbox import Toolbox
from relaychat.domain.answering.runner import GenerationRunner
from relaychat.domain.ids import new_id
from relaychat.domain.intake.external import ConversationOwners
from relaychat.domain.intake.group_commit import GroupCommitWriter
from relaychat.domain.messaging.chat import ChatEngine, send_from_agent
from relaychat.domain.outbound.outbox import DOORBELL
from relaychat.domain.outbound.webhook_routes import ROUTES, WebhookRoutes
from relaychat.domain.outbound.webhooks import check_encryption_key
from relaychat.domain.stats.settled import SETTLED, SettledBuckets
from relaychat.llm.mcp import McpManager
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.llm.registry import EndpointRegistry, load_registry
from relaychat.ratelimit import RateLimiter
from relaychat.realtime import EventBus, create_event_bus
from relaychat.realtime.open_streams import OpenStreams
from relaychat.settings import Settings
from relaychat.statuses import OutboxKind
from relaychat.storage.db import create_engine, create_sessionmaker
from relaychat.workers.audit_writer import AuditWriter
from relaychat.workers.key_last_used import KeyLastUsedWriter
from relaychat.workers.outbox import Doorbell, OutboxWorker
from relaychat.workers.retention import RetentionPolicy, RetentionSweeper
from relaychat.workers.scheduler import Scheduler
from relaychat.workers.twilio import TwilioSender
from relaychat.workers.wal_checkpoint import WalCheckpointer
from relaychat.workers.webhook_sender import WebhookSender


def worker_identity() -> str:
    """Who runs a generation: host, pid and a random tag (pids repeat across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"


logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: AccessTokens
    # Whether each user's access tokens still count (sessions ended, account disabled).
    standing: StandingCache
    limiter: RateLimiter
    redis: Redis | None
    bus: EventBus
    providers: EndpointRegistry
    runner: GenerationRunner
    chat: ChatEngine
    mcp: McpManager
    keys: KeyCache
    key_uses: KeyLastUsedWriter
    audit: AuditWriter
    secrets: SecretBox
    outbox: OutboxWorker
    retention: RetentionSweeper
    # External messages into existing conversations: one transaction per batch.
    intake: GroupCommitWriter
    owners: ConversationOwners
    checkpoints: WalCheckpointer
    # Which webhook endpoints hear of whose events, for every session and the intake.
    routes: WebhookRoutes
    # The event streams open here, and on every worker.
    streams: OpenStreams
    # The dashboard's figures of buckets that are over.
    settled_stats: SettledBuckets
    # The time the scheduler and the schedules API plan by (tests move it).
    clock: Clock
    scheduler: Scheduler
    owns_engine: bool = True

    @classmethod
    def build(
        cls,
        settings: Settings,
        engine: AsyncEngine | None = None,
        providers: EndpointRegistry | None = None,
        clock: Clock | None = None,
    ) -> Services:
        """Wire everything from settings; `engine`, `providers` and `clock` may be lent
        (tests)."""
        owns_engine = engine is None
        engine = engine or create_engine(
            settings.effective_database_url, background_checkpoints=True
        )
        secrets = SecretBox(settings.resolved_encryption_keys())
        redis = None
        if settings.redis_url:
            # A blocking pool: a burst waits for a free connection instead of failing.
            pool = BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=settings.redis_max_connections, timeout=10
            )
            redis = Redis.from_pool(pool)
        bus = create_event_bus(redis, settings.redis_key_prefix, settings.event_log_size)
        doorbell = Doorbell()
        routes = WebhookRoutes(bus)
        settled = SettledBuckets(bus, retention_days=settings.audit_retention_days)
        # Every session rings the outbox worker after a commit that enqueued a callback,
        # empties every worker's webhook routes after one that changed an endpoint, and
        # every worker's kept reply figures after one that deleted replies.
        sessionmaker = create_sessionmaker(
            engine, info={DOORBELL: doorbell.ring, ROUTES: routes, SETTLED: settled}
        )
        if providers is None:
            providers = load_registry(settings.config_path)
        worker_id = worker_identity()
        runner = GenerationRunner(
            sessionmaker=sessionmaker,
            bus=bus,
            providers=providers,
            worker_id=worker_id,
            heartbeat_seconds=settings.generation_heartbeat_seconds,
            lease_seconds=settings.generation_lease_seconds,
        )
        agents = AgentCache(bus)
        chat = ChatEngine(
            sessionmaker=sessionmaker,
            bus=bus,
            providers=providers,
            runner=runner,
            agents=agents,
            max_steps=settings.agent_max_steps,
        )
        servers = load_mcp_config(settings.config_path)
        for skipped in servers.skipped:
            logger.warning("%s", skipped)
        mcp = McpManager(servers, disabled=servers.disabled())
        outbox = OutboxWorker(
            sessionmaker,
            {
                OutboxKind.WEBHOOK: WebhookSender(
                    sessionmaker,
                    secrets,
                    allow_private=settings.webhook_allow_private_networks,
                    timeout=settings.webhook_timeout_seconds,
                    disable_after_seconds=settings.webhook_disable_after_seconds,
                ),
                OutboxKind.TWILIO: TwilioSender(sessionmaker, secrets),
            },
            worker_id=runner.worker_id,
            schedule=settings.webhook_retry_schedule,
            doorbell=doorbell,
            poll_seconds=settings.outbox_poll_seconds,
        )
        chat.toolbox = Toolbox(sessionmaker, functools.partial(send_from_agent, chat), mcp=mcp)
        key_uses = KeyLastUsedWriter(sessionmaker)
        clock = clock or Clock()
        scheduler = Scheduler(
            sessionmaker,
            chat,
            worker_id=worker_id,
            clock=clock,
            poll_seconds=settings.scheduler_poll_seconds,
            lease_seconds=settings.schedule_lease_seconds,
            late_after_seconds=settings.schedule_late_after_seconds,
            phone_region=settings.phone_default_region,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            tokens=AccessTokens(settings.resolved_jwt_secret(), settings.access_token_ttl_seconds),
            standing=StandingCache(bus, sessionmaker),
            limiter=RateLimiter(redis, settings.redis_key_prefix),
            redis=redis,
            bus=bus,
            providers=providers,
            runner=runner,
            chat=chat,
            mcp=mcp,
            keys=KeyCache(
                bus,
                sessionmaker,
                system_keys=system_keys_from_settings(settings),
                ttl_seconds=settings.api_key_cache_seconds,
                on_use=key_uses.touch,
            ),
            key_uses=key_uses,
            audit=AuditWriter(sessionmaker),
            secrets=secrets,
            outbox=outbox,
            retention=RetentionSweeper(
                sessionmaker,
                RetentionPolicy(
                    outbox_days=settings.outbox_retention_days,
                    audit_days=settings.audit_retention_days,
                    batch_size=settings.retention_batch_size,
                ),
                interval_seconds=settings.retention_sweep_seconds,
            ),
            intake=GroupCommitWriter(engine, bus, wake_outbox=doorbell.ring, routes=routes),
            routes=routes,
            streams=OpenStreams(redis, settings.redis_key_prefix, worker_id),
            settled_stats=settled,
            owners=ConversationOwners(),
            checkpoints=WalCheckpointer(engine),
            clock=clock,
            scheduler=scheduler,
            owns_engine=owns_engine,
        )

    async def start(self) -> None:
        """Start the event bus, the generation runner (which recovers orphans), the outbox,
        the retention sweeper and the scheduler."""
        async with self.sessionmaker() as session:
            await check_encryption_key(session, self.secrets)
        await self.bus.start()
        await self.streams.start()
        await self.runner.start()
        self.audit.start()
        self.intake.start()
        self.outbox.start()
        self.retention.start()
        self.checkpoints.start()
        self.scheduler.start()

    async def close(self) -> None:
        """Stop generations (keeping partial text), the bus, then release connections."""
        await self.scheduler.close()  # first: the runs it posts need the rest
        await self.retention.close()
        await self.intake.close()
        await self.runner.close()
        # After the runner: the replies it settled on the way out have their callbacks queued.
        await self.outbox.close()
        await self.audit.close()
        # After the runner: no generation is using an MCP server any more.
        await self.mcp.aclose()
        self.chat.agents.close()
        await self.keys.close()
        await self.standing.close()
        await self.routes.close()
        await self.settled_stats.close()
        await self.key_uses.close()  # the last uses noted, written before the engine goes
        await self.checkpoints.close()  # after the last writer
        await self.streams.close()
        await self.bus.close()
        await self.providers.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.owns_engine:
            await self.engine.dispose()
