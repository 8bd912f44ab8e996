"""The UI's pages and files: security headers, revalidation, nothing from another host."""

from __future__ import annotations

import re
from importlib import resources

import httpx
import pytest

from relaychat.app import create_app
from relaychat.services import Services
from relaychat.settings import Settings

PAGES = ["/", "/login", "/c/some-conversation"]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_the_shell_with_strict_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/static/app.js">' in response.text


async def test_the_shell_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert re.findall(r"<script(?![^>]*\ssrc=)", page) == []
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page)


def test_static_files_name_no_other_host() -> None:
    static = resources.files("relaychat.web").joinpath("static")
    templates = resources.files("relaychat.web").joinpath("templates")
    for folder in (static, templates):
        for entry in folder.iterdir():
            text = entry.read_text()
            # The SVG's XML namespace is a name, not a request.
            hosts = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
            assert hosts in ([], ["http://www.w3.org"]), (entry.name, hosts)


async def test_static_files_revalidate_with_an_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/static/app.js")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/javascript")
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["x-content-type-options"] == "nosniff"
    etag = first.headers["etag"]
    again = await client.get("/static/app.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    changed = await client.get("/static/app.js", headers={"if-none-match": '"stale"'})
    assert changed.status_code == 200 and changed.content == first.content


async def test_the_stylesheet_carries_both_code_themes(client: httpx.AsyncClient) -> None:
    css = (await client.get("/static/app.css")).text
    assert ".md pre code .k " in css
    assert "@media (prefers-color-scheme: dark)" in css


@pytest.mark.parametrize("name", ["nope.js", "..%2Fpages.py", "app.html"])
async def test_anything_else_under_static_is_not_found(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.get(f"/static/{name}")
    assert response.status_code == 404


@pytest.mark.parametrize("allowed", [True, False])
async def test_the_shell_says_whether_registration_is_open(
    services: Services, settings: Settings, allowed: bool
) -> None:
    services.settings = settings.model_copy(update={"allow_registration": allowed})
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        page = (await http.get("/")).text
    assert f'data-allow-registration="{str(allowed).lower()}"' in page
