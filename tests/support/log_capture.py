"""Reading what the server logged, as its handler would have written it."""

from __future__ import annotations

import logging

import pytest

from relaychat.logs import ContextFilter


def watch(caplog: pytest.LogCaptureFixture) -> None:
    """Capture from here on, with the request's context put on each record as the server's
    handler does (caplog's handler is the test phase's own, so this runs in the test)."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]
