"""An outbound HTTP client for user-supplied URLs (webhooks) that refuses non-public targets.

`check_url` vets a URL at registration (no network); `guarded_client` re-checks every address a
host resolves to at connect time and dials the vetted address, so DNS rebinding cannot slip by.
A connect-time refusal raises `UnsafeTarget` itself, not an httpx error (httpx re-raises what is
not httpcore's), so callers that retry on `httpx.HTTPError` do not retry a refused target.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

from relaychat.errors import ErrorCode, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
# Cloud metadata endpoints: refused even with allow_private, since no webhook has a reason to
# call them and reaching one hands out the server's cloud credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
# Ranges Python 3.11's is_global still calls global: IETF protocol assignments, IPv6 site-local.
_ALSO_NOT_GLOBAL = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("fec0::/10"))
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


class UnsafeTarget(ValidationFailed):
    code = ErrorCode.WEBHOOK_TARGET_REFUSED
    title = "Webhook target refused"


def address_allowed(ip: IPAddress, *, allow_private: bool) -> bool:
    """Whether an outbound connection may go to `ip`."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any %scope, which would defeat set lookups
        # ::ffff:a.b.c.d and 6to4 2002:abcd:: reach the embedded IPv4 host: judge that one.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return address_allowed(embedded, allow_private=allow_private)
    if ip in METADATA_ADDRESSES:
        return False
    if allow_private:
        return True
    # is_global alone lets multicast and some reserved ranges through on 3.11.
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return False
    return not any(ip.version == net.version and ip in net for net in _ALSO_NOT_GLOBAL)


def literal_ip(host: str) -> IPAddress | None:
    """The address `host` denotes if it is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # Resolvers also read shorthand like 127.1, 0x7f.0.0.1 or 2130706433 as IPv4.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """Vet a webhook URL without network access; returns it normalised or raises UnsafeTarget."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"URL is longer than {MAX_URL_LENGTH} characters", field="url")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"URL is malformed: {exc}", field="url") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeTarget("URL scheme must be http or https", field="url")
    if not parsed.raw_host:
        raise UnsafeTarget("URL has no host", field="url")
    if parsed.userinfo:
        raise UnsafeTarget("URL must not contain credentials (user:pass@)", field="url")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    ip = literal_ip(host)
    if ip is not None:
        if not address_allowed(ip, allow_private=allow_private):
            raise UnsafeTarget(f"{host} is not a public address", field="url")
    elif not _HOSTNAME.fullmatch(host):
        raise UnsafeTarget("URL host is not a valid hostname", field="url")
    elif not allow_private and (host == "localhost" or host.endswith(_LOCAL_SUFFIXES)):
        raise UnsafeTarget(f"{host} is a local hostname", field="url")
    return str(parsed)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in resolver order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that dials only vetted addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve `host`, refuse it if any address is not allowed, then connect to an address."""
        try:
            # One budget for resolving and every attempt, so many black-holed records can't
            # stall a delivery worker for `timeout` each.
            with anyio.fail_after(timeout):
                return await self._connect(host, port, local_address, socket_options)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out") from None

    async def _connect(
        self,
        host: str,
        port: int,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        ip = literal_ip(host)
        try:
            addresses = [str(ip)] if ip is not None else await resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        # Any bad address refuses the host: a rebinding record must not hide among good ones.
        # The detail leaves the address out so it does not disclose internal DNS.
        for address in addresses:
            if not address_allowed(
                ipaddress.ip_address(address), allow_private=self._allow_private
            ):
                raise UnsafeTarget(f"{host} resolves to a non-public address", field="url")
        error = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                # httpcore's start_tls still gets the URL's hostname, so TLS checks the name.
                return await self._inner.connect_tcp(
                    address, port, None, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    async def sleep(self, seconds: float) -> None:
        """Back off between connection retries."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with its connection pool dialling through GuardedBackend."""

    def __init__(
        self,
        *,
        allow_private: bool,
        verify: ssl.SSLContext | bool = True,
        cert: str | tuple[str, str] | tuple[str, str, str] | None = None,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        ssl_context = httpx.create_ssl_context(verify=verify, cert=cert)
        super().__init__(verify=ssl_context, http1=http1, http2=http2, limits=limits)
        # httpx 0.28 takes no network backend, so swap the unused pool it just built for ours:
        # that keeps httpx's request conversion and exception mapping, which a transport of our
        # own would copy from httpx internals. Fail closed if a later httpx moves its pool.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version is unsupported by relaychat.safehttp")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


class _NoRedirectClient(httpx.AsyncClient):
    """An AsyncClient on which a per-request follow_redirects=True cannot turn redirects on."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        """Send `request`, never following a redirect."""
        if kwargs.get("follow_redirects") is True:
            raise TypeError("guarded clients never follow redirects")
        kwargs["follow_redirects"] = False
        return await super().send(request, **kwargs)


_BYPASSES = frozenset({"transport", "mounts", "proxy", "trust_env", "app"})
_TRANSPORT_OPTIONS = ("verify", "cert", "http1", "http2", "limits")


def guarded_client(
    *, allow_private: bool, timeout: float = 15.0, **kwargs: Any
) -> httpx.AsyncClient:
    """An AsyncClient that never follows redirects and connects only to vetted addresses."""
    if bypasses := sorted(_BYPASSES & kwargs.keys()):
        raise TypeError(f"guarded_client does not take {bypasses}: they bypass the address check")
    if kwargs.pop("follow_redirects", False):
        raise TypeError("guarded clients never follow redirects")
    options = {name: kwargs.pop(name) for name in _TRANSPORT_OPTIONS if name in kwargs}
    return _NoRedirectClient(
        transport=GuardedTransport(allow_private=allow_private, **options),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,  # an environment proxy would make the connection, unchecked
        **kwargs,
    )
