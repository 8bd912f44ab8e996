"""One default TLS client context per library for the whole test process.

Every app a test builds makes four HTTP clients (two provider SDKs, the webhook and Twilio
senders), and each loads the full CA bundle into a new SSLContext: 30 ms of CPU apiece, 70 ms
and more on a loaded machine, or about a fifth of what a short API test costs. A context is
made to be shared by many connections, so the tests share one per CA file or directory: the
same certificates and settings, loaded once. A context from CA data or for another purpose is
still built fresh. (httpx would load a client certificate into the shared context; no test
client passes one.)
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import pytest


@contextmanager
def shared_default_contexts() -> Iterator[None]:
    """While the block runs, a server-authentication context from a CA file or directory
    (httpx's default: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR) and httpx2's default
    are made once and then reused."""
    create_default = ssl.create_default_context
    httpx2_default = httpcore2.default_ssl_context

    @functools.cache
    def ca_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
        return create_default(cafile=cafile, capath=capath)

    @functools.cache
    def httpx2_context(trust_env: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
        return httpx2_default(_trust_env=trust_env)

    def create_default_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if not args and kwargs and kwargs.keys() <= {"cafile", "capath"}:
            return ca_context(kwargs.get("cafile"), kwargs.get("capath"))
        return create_default(*args, **kwargs)

    def default_ssl_context(*, _trust_env: bool = True) -> ssl.SSLContext:
        environ = os.environ
        return httpx2_context(_trust_env, environ.get("SSL_CERT_FILE"), environ.get("SSL_CERT_DIR"))

    replacements: list[tuple[object, str, Callable[..., ssl.SSLContext]]] = [
        (ssl, "create_default_context", create_default_context),
        (httpcore2, "default_ssl_context", default_ssl_context),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, replacement in replacements:
            patch.setattr(owner, name, replacement)
        yield
