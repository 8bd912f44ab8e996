"""Static files of the UI, read once from package data and served with ETag revalidation.

Every response says `Cache-Control: no-cache` with a content-hash `ETag`: the browser keeps
its copy and asks each time, and a 304 costs a few bytes. ES modules import each other by
plain relative URLs, so a hash in the URL would not reach the modules an entry imports;
revalidation busts every one of them the moment its content changes.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from relaychat.markdown import highlight_css

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Generated at start-up and served after the hand-written stylesheet, in the same request.
_GENERATED_CSS = {"app.css": highlight_css}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of `relaychat/web/static`, by its name."""
    assets: dict[str, Asset] = {}
    for entry in resources.files("relaychat.web").joinpath("static").iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        body = entry.read_bytes()
        if entry.name in _GENERATED_CSS:
            body += b"\n" + _GENERATED_CSS[entry.name]().encode()
        suffix = "." + entry.name.rpartition(".")[2]
        media_type = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "text/plain"
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[entry.name] = Asset(body, media_type, etag)
    return assets


def asset_response(request: Request, asset: Asset) -> Response:
    """The asset, or 304 when the browser's copy is current."""
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)
