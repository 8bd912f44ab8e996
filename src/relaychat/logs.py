"""Logs an operator can search: one line per event, each carrying the request it belongs to.

A request's context (its id, and the user, key, conversation and generation once known) lives
in a context variable: every line logged while serving the request carries it, and so does
work the request starts in tasks of its own (asyncio copies the context into a new task, and
the copy holds the same `LogContext`, so what is bound later is seen there too).

Work that outlives the request (a generation, a webhook delivery, a channel's reply) does not
rely on that copy: the id is stored on the row the request caused (`generations.request_id`,
`outbox.request_id`), and whoever takes the row up, in this process or another, logs under
it again with `working(...)`.

Secrets are kept out twice: code never logs them, and every line is scrubbed of the shapes
they have (API keys, webhook secrets, bearer tokens, JWTs) before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

FIELDS = ("request_id", "user_id", "key_id", "conversation_id", "generation_id")


@dataclass
class LogContext:
    # None for background work whose row names no request (written before 0016, or by a
    # command rather than a request).
    request_id: str | None
    user_id: str | None = None
    key_id: str | None = None
    conversation_id: str | None = None
    generation_id: str | None = None


_context: ContextVar[LogContext | None] = ContextVar("relaychat_log_context", default=None)


def current() -> LogContext | None:
    """The context of the request being served here, if any."""
    return _context.get()


def current_request_id() -> str | None:
    """The id of the request (or the background work) being served here, if any: what a
    row written now for it stores as its `request_id`."""
    context = _context.get()
    return context.request_id if context is not None else None


def begin(request_id: str) -> Token[LogContext | None]:
    return _context.set(LogContext(request_id))


def end(token: Token[LogContext | None]) -> None:
    _context.reset(token)


@contextmanager
def working(request_id: str | None, **values: str | None) -> Iterator[LogContext]:
    """Log as the work of `request_id` (read from the row being worked on) until the block
    ends: a context of its own, so nothing bound here reaches the request's."""
    context = LogContext(request_id, **values)
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)


def bind(**values: str | None) -> None:
    """Add what became known (the caller, the conversation) to the current request's lines."""
    context = _context.get()
    if context is None:
        return
    for name, value in values.items():
        if value is not None:
            setattr(context, name, value)


# The shapes of every secret relaychat hands out or is given; a match is replaced whole.
_SECRETS = re.compile(
    r"rck_[A-Za-z0-9_-]{8,}"  # relaychat API keys
    r"|whsec_[A-Za-z0-9+/=_-]{8,}"  # webhook signing secrets
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}"  # JWTs (access tokens)
    r"|sk-[A-Za-z0-9_-]{12,}"  # OpenAI / Anthropic keys
    r"|AIza[A-Za-z0-9_-]{20,}"  # Google API keys
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class ContextFilter(logging.Filter):
    """Puts the request's context on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(context, name) if context else None)
        return True


def _time(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value…` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extras = " ".join(
            f"{name}={value}"
            for name in (*FIELDS, *_ACCESS)
            if (value := getattr(record, name, None)) is not None
        )
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {message}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for a log collector."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, *_ACCESS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


# The access log's own fields (relaychat.http.request_ids writes them).
_ACCESS = ("method", "path", "status", "duration_ms")


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to `sys.stderr` as it is when a line is written, not as it was when logging
    was configured: a command run inside another program (a test runner, which swaps
    stderr and closes its copy after) must not leave a handler on a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always sys.stderr


def default_format() -> LogFormat:
    return "text" if sys.stderr.isatty() else "json"


def config(level: str, fmt: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` for relaychat's loggers and uvicorn's alike."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {
        "()": StderrHandler,
        "formatter": "relaychat",
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"relaychat": {"()": formatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # Through the root's handler, so each line is written once, in our format.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            # Ours replaces it: with the route's template instead of the raw path.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # httpx logs every URL it requests at info, httpcore every header at debug: a
            # webhook URL may carry its receiver's token, and the outbox logs each delivery
            # under the webhook's id instead.
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},  # the LLM adapters' client, the same logger
            "httpcore": {"level": "WARNING"},
            # At debug, aiosqlite logs every statement with its parameters: people's
            # messages and webhook URLs, twice each. SQLAlchemy's own echo is the way to
            # see statements when that is wanted.
            "aiosqlite": {"level": "WARNING"},
        },
    }
