"""Prometheus metrics; with `METRICS_TOKEN` set, only for a scraper that sends it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from relaychat.errors import Unauthenticated
from relaychat.http.deps import SettingsDep
from relaychat.metrics import exposition

router = APIRouter(tags=["health"])

metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="METRICS_TOKEN, when the server sets one",
)


async def check_metrics_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(metrics_bearer)],
) -> None:
    """401 unless METRICS_TOKEN is unset or sent as the bearer token."""
    expected = settings.metrics_token
    if expected is None:
        return
    sent = credentials.credentials if credentials is not None else ""
    # Constant time: how much of a guess matched must not show in how long the answer took.
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Unauthenticated("send `Authorization: Bearer <METRICS_TOKEN>`")


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(check_metrics_token)],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics() -> Response:
    """The counters of every worker of this server, in the Prometheus text format."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
