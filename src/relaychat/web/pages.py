"""Page routes of the browser UI: the app shell at `/`, `/login`, `/c/{id}` and the console
pages (`/keys`, `/keys/{id}`, …), and `/static`.

The shell is the same page for every path; the ES modules read the path and ask the JSON
API for everything else, with the access token they keep in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from relaychat.http.deps import SettingsDep
from relaychat.web.assets import asset_response, load_assets

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
_assets = load_assets()

# No inline script or style anywhere, no other host: what a page can run is what we serve.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# The modules the shell preloads, so the browser fetches them in parallel with app.js.
MODULES = ("api.js", "stream.js", "sidebar.js", "search.js", "chat.js", "composer.js")


def _shell(request: Request, settings: SettingsDep) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        "app.html",
        {
            "allow_registration": settings.allow_registration,
            "modules": MODULES,
        },
        headers=PAGE_HEADERS,
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The chat app (it shows the sign-in form when there is no session)."""
    return _shell(request, settings)


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The sign-in form."""
    return _shell(request, settings)


@router.get("/c/{conversation_id}", response_class=HTMLResponse)
async def conversation(
    request: Request,
    settings: SettingsDep,
    conversation_id: Annotated[str, PathParam(max_length=128)],
) -> HTMLResponse:
    """The chat app with one conversation open (the page checks it is yours)."""
    del conversation_id  # read by the page from its URL
    return _shell(request, settings)


# The console pages the shell's router knows (app.js's PAGES); any other path stays a 404.
CONSOLE_PAGES = (
    "dashboard",
    "agents",
    "keys",
    "webhooks",
    "channels",
    "schedules",
    "profile",
    "admin",
)


def _console_page(name: str) -> None:
    async def console_page(request: Request, settings: SettingsDep) -> HTMLResponse:
        return _shell(request, settings)

    async def console_item(
        request: Request,
        settings: SettingsDep,
        item: Annotated[str, PathParam(max_length=128)],
    ) -> HTMLResponse:
        del item  # read by the page from its URL
        return _shell(request, settings)

    summary = f"The {name} page (the page asks the API, which checks who may see it)."
    router.add_api_route(f"/{name}", console_page, response_class=HTMLResponse, summary=summary)
    router.add_api_route(
        f"/{name}/{{item}}", console_item, response_class=HTMLResponse, summary=summary
    )


for _name in CONSOLE_PAGES:
    _console_page(_name)


@router.get("/static/{name}")
async def static(request: Request, name: Annotated[str, PathParam(max_length=64)]) -> Response:
    """A file of the UI; 404 for anything else."""
    asset = _assets.get(name)
    if asset is None:
        return Response(status_code=404, headers={"X-Content-Type-Options": "nosniff"})
    return asset_response(request, asset)
