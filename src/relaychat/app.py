"""The ASGI application: create_app(settings) and the lifespan that owns shared services."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from relaychat import __version__
from relaychat.api import (
    admin_users,
    agents,
    audit,
    auth,
    channels,
    conversation_transfer,
    conversations,
    doctor,
    endpoints,
    events,
    generations,
    health,
    keys,
    messages,
    metrics,
    schedules,
    search,
    shares,
    stats,
    usage,
    users,
    webhooks,
)
from relaychat.api.conversation_transfer import IMPORT_PATH
from relaychat.api.openapi import install_openapi
from relaychat.exit_signals import on_exit_signal
from relaychat.gateway import routes as gateway_routes
from relaychat.gateway.channels.twilio import routes as twilio_routes
from relaychat.gateway.direct import ExternalMessages
from relaychat.http.middleware import BodySizeLimit, StorableInput
from relaychat.http.problems import install_problem_handlers
from relaychat.http.request_ids import RequestIds
from relaychat.metrics import process_exiting
from relaychat.openai_api.app import ERROR_SHAPES as V1_ERROR_SHAPES
from relaychat.openai_api.app import V1Front, build_v1, mount_v1
from relaychat.services import Services
from relaychat.settings import Settings, get_settings
from relaychat.web import pages as web_pages
from relaychat.web import shared as web_shared


def _nothing() -> None:
    pass


# FastAPI's native OpenTelemetry asks for the global providers on every request: three
# environment lookups that miss, about a tenth of the gateway's CPU (bench.gateway
# --profile). relaychat configures no provider in code, so whether one exists is known at
# start: telemetry stays on when an operator names one through OpenTelemetry's variables.
_OTEL_PROVIDERS = {
    "tracing": "OTEL_PYTHON_TRACER_PROVIDER",
    "metrics": "OTEL_PYTHON_METER_PROVIDER",
    "logs": "OTEL_PYTHON_LOGGER_PROVIDER",
}


def _telemetry() -> TelemetryConfig:
    return TelemetryConfig(
        tracing=_OTEL_PROVIDERS["tracing"] in os.environ,
        metrics=_OTEL_PROVIDERS["metrics"] in os.environ,
        logs=_OTEL_PROVIDERS["logs"] in os.environ,
    )


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, the ORM's and pydantic's schemas,
    the app) out of the garbage collector's reach.

    A full collection walks every tracked object and pauses the event loop meanwhile;
    with the start-up heap in it, the pauses under load made the gateway's p99 at 64
    connections (SQLite: 289 ms before, 79-108 ms after, in quiet runs of bench.gateway's
    server). Frozen objects are never collected; these live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app; `services` may be injected (tests), else built from settings at startup."""
    settings = settings or (services.settings if services else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        restore_signals: Callable[[], None] = _nothing
        if owned:
            app.state.services = Services.build(settings)
            await app.state.services.start()
            restore_signals = on_exit_signal(app.state.services.bus.end_streams)
            freeze_startup_objects()
        try:
            yield
        finally:
            restore_signals()
            if owned:
                await app.state.services.close()
                process_exiting()

    telemetry = _telemetry()
    app = FastAPI(
        title="relaychat",
        version=__version__,
        summary="Chat server where people, LLMs, agents and external systems share conversations.",
        lifespan=lifespan,
        telemetry=telemetry,
    )
    if services is not None:
        app.state.services = services
    install_problem_handlers(app)
    install_openapi(app)
    app.add_middleware(ExternalMessages)  # the gateway's hot path, before routing (direct.py)
    v1 = build_v1(telemetry)
    app.add_middleware(V1Front, v1=v1)  # /v1 without the main routes (openai_api/app.py)
    # inside the size limit: it reads only capped bodies
    app.add_middleware(StorableInput, error_shapes=V1_ERROR_SHAPES)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        # The import's file may be larger; the multipart body around it adds a few hundred
        # bytes, and the route checks the file itself against the limit.
        larger={IMPORT_PATH: settings.import_max_bytes + 64 * 1024},
        error_shapes=V1_ERROR_SHAPES,
    )
    app.add_middleware(events.EventStreams)  # streams answered before routing (sse_app.py)
    # Outermost: every answer carries the id, every log line of the request too.
    app.add_middleware(RequestIds, trusted_proxies=settings.forwarded_allow_ips)
    for module in (
        health,
        auth,
        users,
        conversation_transfer,  # before conversations: /export is not a conversation id
        conversations,
        messages,
        generations,
        events,
        endpoints,
        agents,
        keys,
        audit,
        admin_users,
        doctor,
        metrics,
        stats,
        usage,
        search,
        shares,
        webhooks,
        channels,
        schedules,
    ):
        app.include_router(module.router)
    # The machines' routes. Twilio's webhooks (/api/channels/twilio/{id}...) take two or more
    # segments after /api/channels/, people's channel routes one, so the order between them
    # does not decide a match; they keep the place they had when api/channels.py held them.
    app.include_router(twilio_routes.router)
    app.include_router(gateway_routes.router)
    mount_v1(app, v1)  # the OpenAI-compatible API, with OpenAI's error shape
    app.include_router(web_pages.router)
    app.include_router(web_shared.router)
    return app
