"""The doctor: what an operator wants to know before a user finds out — each check of the
settings, stores, endpoints, MCP servers, webhook targets, Twilio channels and disk, with a
verdict.

Each check says what it saw in one line an operator can act on, and never a secret: an
endpoint's failure is named by its kind (a provider's message may quote part of the key),
and a webhook by its id and host (a URL's path and query often carry a token), a channel by
its name and id.
"""

from __future__ import annotations

import asyncio
import shutil
import stat
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from relaychat import safehttp
from relaychat.crypto import SecretBox
from relaychat.domain.telephony.channels import DEFAULT_API_BASE_URL, channel_token
from relaychat.errors import AppError
from relaychat.llm.config import ConfigError, load_config
from relaychat.llm.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from relaychat.llm.mcp.config import load_mcp_config
from relaychat.llm.mcp.manager import McpManager
from relaychat.llm.registry import EndpointRegistry
from relaychat.settings import Settings
from relaychat.statuses import McpServerState
from relaychat.storage import migrate
from relaychat.storage.models import Channel, WebhookEndpoint

# One slow upstream must not hold the whole report.
CHECK_SECONDS = 15.0
# Free space below which writes are about to fail (SQLite needs room for its WAL and temp
# files), and below which an operator should act soon.
DISK_FAIL_BYTES = 100 * 1024 * 1024
DISK_WARN_BYTES = 1024 * 1024 * 1024
KEPT_SECRETS = ("jwt_secret", "encryption_key")


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Report:
    checks: list[Check]

    @property
    def verdict(self) -> Status:
        """The worst status of any check."""
        statuses = {check.status for check in self.checks}
        for worst in (Status.FAIL, Status.WARN):
            if worst in statuses:
                return worst
        return Status.OK


async def examine(
    settings: Settings,
    engine: AsyncEngine,
    registry: EndpointRegistry,
    mcp: McpManager,
    secrets: SecretBox | None,
) -> Report:
    """Every check, run side by side (each bounded by CHECK_SECONDS). `secrets` is None
    where no encryption key exists yet (then no stored secret can be read either)."""
    groups: Sequence[Awaitable[list[Check]]] = (
        _listed(check_files(settings)),
        _now(check_config(settings.config_path)),
        _listed(check_database(engine)),
        _listed(check_redis(settings.redis_url)),
        check_endpoints(registry),
        check_mcp(mcp),
        check_webhooks(engine, allow_private=settings.webhook_allow_private_networks),
        check_channels(engine, secrets),
        _now([check_disk(settings.data_dir)]),
    )
    found = await asyncio.gather(*groups)
    return Report([check for group in found for check in group])


def check_config(path: Path | None) -> list[Check]:
    """relaychat.yaml parses; what it leaves out for a missing variable is said."""
    name = str(path) if path is not None else "relaychat.yaml"
    if path is None or not path.is_file():
        return [Check("settings", name, Status.OK, "no file: endpoints from the environment")]
    try:
        config = load_config(path)
        servers = load_mcp_config(path)
    except ConfigError as exc:
        return [Check("settings", name, Status.FAIL, _first_line(exc))]
    detail = (
        f"{_count(len(config.endpoint_specs()), 'endpoint')}, {_count(len(servers), 'MCP server')}"
    )
    checks = [Check("settings", name, Status.OK, detail)]
    for skipped in [*config.skipped, *servers.skipped]:
        detail = f"{skipped.kind} left out: {skipped.variable} is not set"
        checks.append(Check("settings", skipped.name, Status.WARN, detail))
    return checks


async def check_files(settings: Settings) -> Check:
    """The data dir is private and the secrets kept in it are readable by their owner only."""
    data_dir = settings.data_dir
    if not data_dir.exists():
        return Check("settings", "data dir", Status.WARN, f"{data_dir} does not exist yet")
    loose: list[str] = []
    if _open_to_others(data_dir):
        loose.append(f"{data_dir} is {_mode(data_dir)} (want 0700)")
    for name in KEPT_SECRETS:
        path = data_dir / name
        if path.exists() and _open_to_others(path):
            loose.append(f"{name} is {_mode(path)} (want 0600)")
    if loose:
        return Check("settings", "file modes", Status.FAIL, "; ".join(loose) + ": chmod them, now")
    kept = [name for name in KEPT_SECRETS if (data_dir / name).exists()]
    where = f"{', '.join(kept)} kept in {data_dir}" if kept else "secrets from the environment"
    return Check("settings", "file modes", Status.OK, f"private ({where})")


async def check_database(engine: AsyncEngine) -> Check:
    """Reachable, and at this release's schema."""
    kind = _database_kind(engine)
    try:
        async with asyncio.timeout(CHECK_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            current = await migrate.current_revisions(connection)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return Check("database", kind, Status.FAIL, f"unreachable: {_first_line(exc)}")
    heads = migrate.head_revisions()
    if current == heads:
        return Check("database", kind, Status.OK, f"reachable, schema at {_join(current)}")
    if not current:
        return Check(
            "database",
            kind,
            Status.WARN,
            "reachable, never migrated: `relaychat serve` or "
            "`relaychat db upgrade` creates the schema",
        )
    unknown = [rev for rev in current if not migrate.known_revision(rev)]
    if unknown:
        return Check(
            "database",
            kind,
            Status.FAIL,
            f"at {_join(current)}, which this release does not know: a newer relaychat migrated it",
        )
    return Check(
        "database",
        kind,
        Status.WARN,
        f"behind: at {_join(current)}, this release needs "
        f"{_join(heads)} (`relaychat serve` or `relaychat db upgrade` migrates it)",
    )


async def check_redis(url: str | None) -> Check:
    if not url:
        return Check(
            "redis",
            "redis",
            Status.OK,
            "not configured: events and rate limits are kept in this process (one worker)",
        )
    redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    target = _host_of(url)
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await redis.ping()
            info = await redis.info("server")
    except Exception as exc:  # any failure to reach it is the finding
        return Check("redis", target, Status.FAIL, f"unreachable: {_first_line(exc)}")
    finally:
        await redis.aclose()
    return Check("redis", target, Status.OK, f"answers (Redis {info.get('redis_version', '?')})")


async def check_endpoints(registry: EndpointRegistry) -> list[Check]:
    """Each endpoint lists its models with its own key: the cheapest call that proves both
    the address and the key."""
    return list(await asyncio.gather(*(_endpoint(registry, name) for name in registry.names())))


async def _endpoint(registry: EndpointRegistry, name: str) -> Check:
    spec = registry.spec(name)
    label = f"{name} ({spec.provider})"
    try:
        provider = registry.provider(name)
    except Exception as exc:  # not implemented, or its SDK is missing: the reason is ours
        return Check("endpoints", label, Status.FAIL, _first_line(exc))
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            models = await provider.list_models()
    except ProviderAuthFailed:
        return Check(
            "endpoints",
            label,
            Status.FAIL,
            "authentication failed: the endpoint refused its "
            "API key (wrong, revoked or for another account)",
        )
    except (ProviderUnavailable, ProviderTimeout, TimeoutError):
        target = httpx.URL(spec.base_url) if spec.base_url else None
        where = f"{target.host}:{target.port or ''}".rstrip(":") if target else "its address"
        return Check("endpoints", label, Status.FAIL, f"unreachable at {where}")
    except ProviderError as exc:
        return Check("endpoints", label, Status.FAIL, f"listing its models failed ({exc.code})")
    configured = list(spec.config.models.default)
    missing = [model for model in configured if models and model not in models]
    if missing:
        return Check(
            "endpoints",
            label,
            Status.WARN,
            f"{len(models)} models offered, but not the configured {', '.join(missing)}",
        )
    return Check("endpoints", label, Status.OK, f"{len(models)} models offered")


async def check_mcp(mcp: McpManager) -> list[Check]:
    """Each MCP server starts and lists its tools (started if this process had not yet)."""
    statuses = await mcp.survey(wait=CHECK_SECONDS)
    checks: list[Check] = []
    for status in statuses:
        if status.state == McpServerState.RUNNING:
            names = ", ".join(tool.name for tool in status.tools[:5])
            more = ", …" if len(status.tools) > 5 else ""
            detail = f"running, {len(status.tools)} tools ({names}{more})"
            checks.append(Check("mcp", status.name, Status.OK, detail))
        elif status.state == McpServerState.DISABLED:
            checks.append(Check("mcp", status.name, Status.WARN, f"disabled: {status.reason}"))
        elif status.state == McpServerState.STARTING:
            detail = f"still starting after {CHECK_SECONDS:g} s"
            checks.append(Check("mcp", status.name, Status.WARN, detail))
        else:
            reason = status.reason or status.error or "failed"
            checks.append(Check("mcp", status.name, Status.FAIL, f"does not start: {reason}"))
    return checks


async def check_webhooks(engine: AsyncEngine, *, allow_private: bool) -> list[Check]:
    """Every enabled endpoint's target is one the delivery worker would dial, now."""
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(
                        WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.enabled
                    ).order_by(WebhookEndpoint.created_at)
                )
            ).all()
    except SQLAlchemyError as exc:
        return [Check("webhooks", "targets", Status.FAIL, f"cannot read: {_first_line(exc)}")]
    enabled = [(row.id, row.url) for row in rows if row.enabled]
    disabled = len(rows) - len(enabled)
    verdicts = await asyncio.gather(
        *(_target(endpoint_id, url, allow_private) for endpoint_id, url in enabled)
    )
    checks = [check for check in verdicts if check is not None]
    if not checks:
        detail = f"{_count(len(enabled), 'enabled endpoint')}, every target allowed"
        checks.append(Check("webhooks", "targets", Status.OK, detail))
    if disabled:
        checks.append(
            Check(
                "webhooks",
                "disabled",
                Status.WARN,
                f"{disabled} endpoints disabled (their owners see why on the Webhooks page)",
            )
        )
    return checks


async def _target(endpoint_id: str, url: str, allow_private: bool) -> Check | None:
    host = httpx.URL(url).host or "?"
    name = f"{endpoint_id} ({host})"
    try:
        safehttp.check_url(url, allow_private=allow_private)
        port = httpx.URL(url).port or (443 if url.startswith("https") else 80)
        async with asyncio.timeout(CHECK_SECONDS):
            addresses = await safehttp.resolve(host, port)
    except safehttp.UnsafeTarget as exc:
        return Check("webhooks", name, Status.FAIL, f"target refused: {exc.detail}")
    except (OSError, TimeoutError):
        return Check("webhooks", name, Status.WARN, "its host does not resolve now")
    refused = [
        address
        for address in addresses
        if (ip := safehttp.literal_ip(address)) is None
        or not safehttp.address_allowed(ip, allow_private=allow_private)
    ]
    if refused:
        detail = f"resolves to {', '.join(refused)}, which deliveries may not reach"
        return Check("webhooks", name, Status.FAIL, detail)
    return None


async def check_channels(engine: AsyncEngine, secrets: SecretBox | None) -> list[Check]:
    """Every enabled Twilio channel's account SID and auth token, as Twilio's API takes them
    now: otherwise a wrong token shows only when a reply's SMS is refused."""
    query = (
        select(Channel)
        .where(Channel.type == "twilio", Channel.enabled.is_(True))
        .order_by(Channel.created_at)
    )
    try:
        async with AsyncSession(engine) as session:
            channels = (await session.scalars(query)).all()
    except SQLAlchemyError as exc:
        return [Check("channels", "twilio", Status.FAIL, f"cannot read: {_first_line(exc)}")]
    if not channels:
        return [Check("channels", "twilio", Status.OK, "no enabled Twilio channel")]
    async with httpx.AsyncClient(timeout=CHECK_SECONDS) as http:
        return list(await asyncio.gather(*(_channel(http, c, secrets) for c in channels)))


async def _channel(http: httpx.AsyncClient, channel: Channel, secrets: SecretBox | None) -> Check:
    name = f"{channel.name} ({channel.id})"
    config = channel.config or {}
    sid = str(config.get("account_sid", ""))
    base = str(config.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
    if secrets is None:
        if channel.secret_encrypted is not None:
            detail = "its auth token is encrypted, and no ENCRYPTION_KEY or data-dir key is here"
            return Check("channels", name, Status.FAIL, detail)
        # Its token is read from the environment: a box of a throwaway key opens nothing.
        secrets = SecretBox([Fernet.generate_key().decode()])
    try:
        token = channel_token(channel, secrets)
    except AppError as exc:
        return Check("channels", name, Status.FAIL, f"auth token unreadable: {exc.detail}")
    # Twilio's "fetch an account": the cheapest call that proves the SID and token.
    url = f"{base}/2010-04-01/Accounts/{sid}.json"
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            response = await http.get(url, auth=(sid, token))
    except (httpx.HTTPError, TimeoutError):
        host = httpx.URL(base).host
        return Check("channels", name, Status.FAIL, f"Twilio's API unreachable at {host}")
    if response.status_code in (401, 403, 404):
        detail = "Twilio refused the account SID and auth token (authentication failed)"
        return Check("channels", name, Status.FAIL, detail)
    if not response.is_success:
        return Check("channels", name, Status.WARN, f"Twilio answered {response.status_code}")
    try:
        state = response.json().get("status")
    except ValueError:
        state = None
    if state not in (None, "active"):
        return Check("channels", name, Status.FAIL, f"the Twilio account is {state}")
    return Check("channels", name, Status.OK, "Twilio accepts its credentials")


def check_disk(data_dir: Path) -> Check:
    """Free space where the data dir is (or would be)."""
    where = data_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    detail = f"{_size(usage.free)} free of {_size(usage.total)} at {where}"
    if usage.free < DISK_FAIL_BYTES:
        return Check("disk", "data dir", Status.FAIL, detail)
    if usage.free < DISK_WARN_BYTES or usage.free < usage.total * 0.05:
        return Check("disk", "data dir", Status.WARN, detail)
    return Check("disk", "data dir", Status.OK, detail)


async def _listed(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _now(checks: list[Check]) -> list[Check]:
    return checks


def _open_to_others(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def _database_kind(engine: AsyncEngine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.host}:{url.port or 5432}/{url.database}"


def _host_of(url: str) -> str:
    """host:port only: a Redis URL may hold a password."""
    target = httpx.URL(url)
    return f"{target.host}:{target.port or 6379}"


def _join(revisions: Iterable[str]) -> str:
    return ", ".join(sorted(revisions))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
