"""safehttp: registration-time URL checks, and connect-time refusal against a loopback server."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relaychat import safehttp
from relaychat.safehttp import UnsafeTarget, address_allowed, check_url, guarded_client

PRIVATE_URLS = [
    "http://127.0.0.1/x",
    "http://127.1/x",
    "http://2130706433/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[2002:7f00:1::]/x",
    "http://10.1.2.3/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://100.64.0.1/x",
    "http://0.0.0.0/x",
    "http://[fd12::1]/x",
    "http://[fe80::1]/x",
    "http://localhost:8080/x",
    "http://foo.localhost/x",
    "http://printer.local/x",
    "http://metadata.google.internal/x",
]
METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/x",
    "http://100.100.100.200/x",
    "http://[::ffff:169.254.169.254]/x",
]
MALFORMED_URLS = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "http:///hook",
    "https://user:pass@example.com/hook",
    "https://user@example.com/hook",
    "https://example.com/" + "a" * 2048,
    "https://exa mple.com/hook",
]


def test_check_url_accepts_public_targets() -> None:
    assert check_url("https://example.com/hook", allow_private=False) == "https://example.com/hook"
    assert check_url("http://93.184.216.34/x", allow_private=False) == "http://93.184.216.34/x"
    assert check_url("HTTPS://Example.COM/a b", allow_private=False) == "https://example.com/a%20b"


@pytest.mark.parametrize("url", PRIVATE_URLS + METADATA_URLS + MALFORMED_URLS)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(UnsafeTarget) as caught:
        check_url(url, allow_private=False)
    assert caught.value.code == "webhook_target_refused"
    assert caught.value.status == 422
    assert caught.value.fields == {"field": "url"}


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_allow_private_admits_private_targets(url: str) -> None:
    assert check_url(url, allow_private=True)


@pytest.mark.parametrize("url", METADATA_URLS + MALFORMED_URLS)
def test_allow_private_still_refuses_metadata_and_malformed(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url(url, allow_private=True)


@pytest.mark.parametrize(
    "address",
    ["224.0.0.1", "240.0.0.1", "192.0.0.8", "ff0e::1", "::7f00:1", "fec0::1", "fe80::1%2"],
)
def test_address_allowed_refuses_what_is_global_misses(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), allow_private=False)


@dataclass
class Server:
    """A loopback HTTP/1.1 server that counts connections and knows one redirect."""

    port: int = 0
    connections: int = 0
    hosts: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            path = head.split()[1]
            self.hosts += [line[6:] for line in head.split("\r\n") if line.startswith("Host: ")]
            if path == "/redirect":
                status, extra = "302 Found", "Location: http://example.com/\r\n"
            else:
                status, extra = "200 OK", ""
            head = f"HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n"
            writer.write(f"{head}\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


Serve = Callable[[ssl.SSLContext | None], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(tls: ssl.SSLContext | None = None) -> Server:
        state = Server()
        server = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def resolve_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every *.example name resolve to 127.0.0.1: the DNS-rebinding attacker's view."""
    real = safehttp.resolve

    async def fake(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host.endswith(".example") else await real(host, port)

    monkeypatch.setattr(safehttp, "resolve", fake)


async def test_refuses_loopback_ip_before_connecting(serve: Serve) -> None:
    server = await serve(None)
    async with guarded_client(allow_private=False) as client:
        with pytest.raises(UnsafeTarget) as caught:
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert caught.value.code == "webhook_target_refused"
    assert server.connections == 0


async def test_refuses_hostname_resolving_to_loopback(serve: Serve) -> None:
    server = await serve(None)
    async with guarded_client(allow_private=False) as client:
        with pytest.raises(UnsafeTarget):
            await client.get(f"http://localhost:{server.port}/")
    assert server.connections == 0


@pytest.mark.usefixtures("resolve_to_loopback")
async def test_refuses_public_name_rebound_to_loopback(serve: Serve) -> None:
    server = await serve(None)
    # Passes the registration check, then resolves to 127.0.0.1 when the delivery connects.
    url = check_url(f"http://public.example:{server.port}/", allow_private=False)
    async with guarded_client(allow_private=False) as client:
        with pytest.raises(UnsafeTarget):
            await client.get(url)
    assert server.connections == 0


@pytest.mark.usefixtures("resolve_to_loopback")
async def test_connects_to_the_vetted_address_keeping_the_name(serve: Serve) -> None:
    server = await serve(None)
    # public.example has no real DNS, so reaching the server proves the vetted address was dialled.
    async with guarded_client(allow_private=True) as client:
        response = await client.get(f"http://public.example:{server.port}/")
    assert response.status_code == 200
    assert server.hosts == [f"public.example:{server.port}"]


async def test_allow_private_reaches_loopback_and_returns_redirects(serve: Serve) -> None:
    server = await serve(None)
    async with guarded_client(allow_private=True) as client:
        assert (await client.get(f"http://localhost:{server.port}/")).status_code == 200
        redirect = await client.get(f"http://127.0.0.1:{server.port}/redirect")
        with pytest.raises(TypeError):
            await client.get(f"http://127.0.0.1:{server.port}/redirect", follow_redirects=True)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "http://example.com/"
    assert server.connections == 2


async def test_resolution_counts_against_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["93.184.216.34"]

    monkeypatch.setattr(safehttp, "resolve", slow)
    async with guarded_client(allow_private=False, timeout=0.05) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://slow.example/")


def test_guarded_client_refuses_options_that_bypass_the_check() -> None:
    for option in ({"proxy": "http://proxy.test:3128"}, {"follow_redirects": True}):
        with pytest.raises(TypeError):
            guarded_client(allow_private=False, **option)


def _self_signed(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` only, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server_ctx, ssl.create_default_context(cadata=pem.decode())


@pytest.mark.usefixtures("resolve_to_loopback")
async def test_tls_verifies_the_original_hostname(serve: Serve, tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path, "public.example")
    server = await serve(server_ctx)
    async with guarded_client(allow_private=True, verify=client_ctx) as client:
        # The certificate names public.example, not 127.0.0.1: this passes only if TLS
        # checked the name from the URL rather than the address that was dialled.
        ok = await client.get(f"https://public.example:{server.port}/")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://other.example:{server.port}/")
    assert ok.status_code == 200
