"""One Settings object, loaded from the environment once and injected where needed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from limits import parse
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values people paste from examples; a server signing tokens with one of them is open to all.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "jwt_secret",
        "your-secret",
        "your_secret",
        "your-jwt-secret",
        "supersecret",
        "password",
        "replace-me",
        "xxx",
        "todo",
    }
)
MIN_SECRET_LENGTH = 32


class PlaceholderSecretError(ValueError):
    """A secret was set to an example value or is too short to be safe."""


class Settings(BaseSettings):
    """Every knob of relaychat; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # -- server --------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(3080, description="Port the HTTP server listens on.")
    data_dir: Path = Field(
        Path("./data"),
        validation_alias=AliasChoices("RELAYCHAT_DATA_DIR", "data_dir"),
        description="Directory for the embedded database and generated secrets.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="Proxies (addresses, networks, or *) whose X-Forwarded-For and X-Request-Id "
        "are believed, as uvicorn reads this variable.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    log_format: Literal["text", "json"] | None = Field(
        None, description="`text` or `json`; unset: text on a terminal, JSON otherwise."
    )
    shutdown_grace_seconds: int = Field(
        10,
        ge=1,
        description="After SIGTERM, how long requests in flight may take to finish before "
        "the server stops anyway (running replies are then saved as unfinished).",
    )
    max_body_bytes: int = Field(
        1024 * 1024, description="Largest request body accepted; larger ones get 413."
    )

    metrics_token: str | None = Field(
        None,
        description="When set, GET /metrics wants `Authorization: Bearer <this token>`.",
    )

    @field_validator("metrics_token")
    @classmethod
    def _strong_metrics_token(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        check_secret("METRICS_TOKEN", value)
        return value

    config_path: Path = Field(
        Path("./relaychat.yaml"),
        validation_alias=AliasChoices("RELAYCHAT_CONFIG", "config_path"),
        description="YAML file with LLM endpoints and MCP servers (optional).",
    )

    # -- storage -------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default is SQLite in the data dir."
    )
    redis_url: str | None = Field(
        None, description="Redis URL for shared events and limits across workers."
    )
    redis_max_connections: int = Field(
        64, ge=2, description="Redis connections per worker; a burst waits for a free one."
    )
    redis_key_prefix: str = Field(
        "relaychat:", description="Prefix of every Redis key this instance writes."
    )

    # -- real time and generations -------------------------------------------------------
    sse_heartbeat_seconds: float = Field(15.0, description="Idle time before a `: ping`.")
    event_log_size: int = Field(1000, description="Events kept per user for Last-Event-ID replay.")
    generation_heartbeat_seconds: float = Field(
        2.0, description="How often running generations renew their lease and save text."
    )
    generation_lease_seconds: float = Field(
        20.0,
        description="Silence after which any worker (a restarted one too) marks a generation "
        "interrupted.",
    )

    agent_max_steps: int = Field(
        10, ge=1, le=100, description="Model calls an agent may make for one reply."
    )

    # -- external messages -----------------------------------------------------------------
    external_message_api_key: str | None = Field(
        None, description="A system API key for external messages (the original variable)."
    )
    external_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="More system API keys, separated by commas."
    )

    @field_validator("external_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    unauthenticated_rate_limit: str = Field(
        "20/minute",
        description="Refused (no or bad key or signature) requests allowed per client address; "
        "more get 429 and are counted, not audited one by one.",
    )

    @field_validator("unauthenticated_rate_limit", "login_rate_limit")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        # Refused at start-up rather than at the first request that needs it.
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as `20/minute`") from exc
        return value

    api_key_cache_seconds: float = Field(
        30.0, gt=0, description="How long a worker trusts a cached API key if a change is missed."
    )

    # -- accounts and sessions -----------------------------------------------------------
    jwt_secret: str | None = Field(
        None, description="HMAC key for access tokens; generated and kept in the data dir."
    )
    access_token_ttl_seconds: int = Field(900, description="Lifetime of an access token.")
    refresh_token_ttl_seconds: int = Field(
        30 * 24 * 3600, description="Lifetime of a refresh token family member."
    )
    allow_registration: bool = Field(True, description="Whether anyone may register.")
    cookie_secure: bool = Field(
        True, description="Mark cookies Secure (browsers accept them on localhost too)."
    )
    login_rate_limit: str = Field(
        "7/5 minutes", description="Login attempts allowed per client address and email."
    )
    phone_default_region: str = Field(
        "US", description="Region used to read phone numbers written without +country."
    )
    search_language: str = Field(
        "simple",
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="Language of the search index: a PostgreSQL text search configuration "
        "(`simple`, `english`, …); on SQLite `simple` or `english` (Porter stemming). Changing "
        "it needs `relaychat search reindex` (serve refuses an index in another language).",
    )

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_placeholder(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        check_secret("JWT_SECRET", value)
        return value

    encryption_key: str | None = Field(
        None,
        description="Fernet keys (comma-separated, newest first) that encrypt stored secrets; "
        "generated and kept in the data dir.",
    )

    # -- export and import ---------------------------------------------------------------
    import_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="Largest file POST /api/convos/import accepts (the only route allowed "
        "more than MAX_BODY_BYTES); larger ones get 413.",
    )
    import_max_conversations: int = Field(
        1000, ge=1, description="Conversations one import may hold; more is 422, nothing written."
    )
    import_max_messages: int = Field(
        10_000, ge=1, description="Messages one imported conversation may hold; more is refused."
    )

    # -- webhooks and channels -----------------------------------------------------------
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="Seconds before each delivery attempt, separated by commas "
        "(Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).",
    )
    webhook_allow_private_networks: bool = Field(
        False, description="Allow webhook targets in loopback, private and link-local ranges."
    )
    webhook_timeout_seconds: float = Field(15.0, gt=0, description="Timeout of one delivery.")
    webhook_disable_after_seconds: float = Field(
        5 * 24 * 3600.0, gt=0, description="An endpoint failing this long is disabled."
    )
    outbox_poll_seconds: float = Field(
        1.0, gt=0, description="How often the delivery worker looks for due callbacks."
    )

    # -- schedules -----------------------------------------------------------------------
    schedule_min_interval_seconds: float = Field(
        60.0, gt=0, description="Shortest time allowed between two runs of a schedule."
    )
    schedule_max_per_user: int = Field(50, ge=0, description="Most schedules one user may have.")
    scheduler_poll_seconds: float = Field(
        1.0, gt=0, description="How often the scheduler looks for due schedules and runs."
    )
    schedule_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a scheduler holds a run it claimed; a run whose scheduler died "
        "is tried once more after this.",
    )
    schedule_late_after_seconds: float = Field(
        60.0,
        gt=0,
        description="An occurrence found this late (the server was down) is missed: it "
        "follows the schedule's `catch_up` instead of running as usual.",
    )

    # -- retention -----------------------------------------------------------------------
    outbox_retention_days: float = Field(
        7.0,
        ge=0,
        description="Days settled callbacks (delivered, failed, cancelled) and their attempts "
        "are kept; 0 keeps them forever.",
    )
    audit_retention_days: float = Field(
        90.0, ge=0, description="Days audit rows are kept; 0 keeps them forever."
    )
    retention_sweep_seconds: float = Field(
        3600.0, gt=0, description="How often old rows (and expired idempotency records) go."
    )
    retention_batch_size: int = Field(
        1000, ge=1, le=10000, description="Rows deleted per transaction by the sweeper."
    )

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not value or any(step < 0 for step in value):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE needs one or more non-negative delays")
        if value[0] != 0:
            # As in Standard Webhooks' schedule: the first attempt is made at once.
            raise ValueError(
                "WEBHOOK_RETRY_SCHEDULE starts with 0 (the first attempt is immediate)"
            )
        return value

    # -- derived -------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'relaychat.db').resolve()}"

    def resolved_jwt_secret(self) -> str:
        """JWT_SECRET, or a random secret generated once and kept in the data dir."""
        if self.jwt_secret:
            return self.jwt_secret
        value = self._kept_secret("jwt_secret", lambda: secrets.token_urlsafe(48))
        check_secret(str(self.data_dir / "jwt_secret"), value)
        return value

    def resolved_encryption_keys(self) -> list[str]:
        """ENCRYPTION_KEY's keys, or one Fernet key generated once and kept in the data dir."""
        if self.encryption_key:
            return [part.strip() for part in self.encryption_key.split(",") if part.strip()]
        # A Fernet key is 32 random bytes, url-safe base64.
        return [self._kept_secret("encryption_key", lambda: secrets.token_urlsafe(32) + "=")]

    def _kept_secret(self, name: str, generate: Callable[[], str]) -> str:
        path = self.data_dir / name
        if path.exists():
            return _read_kept(path)
        # Private: it holds the keys to every token and stored secret.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        value = generate()
        # O_EXCL: when two workers start together only one secret wins; the other reads it.
        try:
            with path.open("x") as handle:
                path.chmod(0o600)
                handle.write(value)
        except FileExistsError:
            return _read_kept(path)
        return value


def _read_kept(path: Path) -> str:
    """A kept secret; another process may have created the file and not yet written it."""
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.02)
    raise ValueError(f"{path} is empty; delete it to have a new secret generated")


def check_secret(name: str, value: str) -> None:
    """Refuse example values and short secrets."""
    if value.strip().lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH:
        raise PlaceholderSecretError(
            f"{name} is a placeholder or shorter than {MIN_SECRET_LENGTH} characters; "
            "unset it to have one generated, or use e.g. `openssl rand -hex 32`"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
