"""The /v1 application: its own error handlers (OpenAI's shape; the rest of the API keeps
problem+json), mounted into the main app and sharing its state (the services)."""

from __future__ import annotations

from fastapi import FastAPI

from relaychat import __version__
from relaychat.openai_api import chat_completions, models, responses
from relaychat.openai_api.errors import install_error_handlers, write_error

PREFIX = "/v1"
# For the parent's middleware (relaychat.http.middleware): what it refuses under /v1 before
# routing is written in OpenAI's shape too.
ERROR_SHAPES = {PREFIX: write_error}


def mount_v1(parent: FastAPI) -> FastAPI:
    """Build the /v1 application and mount it into `parent`."""
    v1 = FastAPI(
        title="relaychat OpenAI-compatible API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
    )
    # One state for both: the parent's lifespan puts the services there (a mounted app's
    # own lifespan never runs), and routes read them from `request.app.state`.
    v1.state = parent.state
    install_error_handlers(v1)
    v1.include_router(models.router)
    v1.include_router(chat_completions.router)
    v1.include_router(responses.router)
    parent.mount(PREFIX, v1)
    return v1
