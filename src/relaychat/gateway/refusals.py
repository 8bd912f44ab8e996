"""Requests refused for lack of valid credentials: a limit per client address, and an audit
that a flood cannot grow without bound.

Every refusal counts against `UNAUTHENTICATED_RATE_LIMIT` for its address (an IPv6 address
by its /64, which one host usually owns whole). Within the limit a refusal is audited as
usual. Over it the caller gets 429 with `Retry-After`, and only the first throttled request
of a window leaves a row (reason `rate_limited`): the rest are counted in the
`relaychat_rate_limited{scope="unauthenticated"}` metric only. So an address writes at
most limit + 1 rows per window, whatever it sends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from limits import RateLimitItemPerSecond

from relaychat.errors import AppError, RateLimited
from relaychat.metrics import RATE_LIMITED
from relaychat.services import Services


@dataclass(frozen=True)
class Refusal:
    """What to answer a refused request, and whether it gets an audit row."""

    error: AppError
    audited: bool


def address_bucket(address: str | None) -> str:
    """The unit a limit counts: an IPv4 address, or the /64 of an IPv6 one."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


async def refuse_unauthenticated(
    services: Services, address: str | None, error: AppError
) -> Refusal:
    """Count `error` (no, unknown, revoked or expired credentials) against the address."""
    bucket = address_bucket(address)
    verdict = await services.limiter.hit(
        services.settings.unauthenticated_rate_limit, "unauthenticated", bucket
    )
    if verdict.allowed:
        return Refusal(error, audited=True)
    RATE_LIMITED.labels("unauthenticated").inc()
    # One row per window says the address is being throttled; the limiter decides which,
    # so the bound holds across workers sharing Redis as well.
    marker = await services.limiter.hit(
        RateLimitItemPerSecond(1, verdict.window_seconds), "unauthenticated-audit", bucket
    )
    throttled = RateLimited(
        "too many requests without valid credentials from this address; try again later",
        headers={"Retry-After": str(verdict.retry_after)},
        retry_after=verdict.retry_after,
    )
    return Refusal(throttled, audited=marker.allowed)
