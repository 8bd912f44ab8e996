"""Errors of LLM endpoints, each with a stable code; `retryable` says a retry may succeed.

AppError
├── ProviderError (502)               something went wrong talking to the upstream
│   ├── ProviderAuthFailed (502)      upstream said 401/403: our key is wrong
│   ├── ProviderBadRequest (400)      upstream refused the request (400/404/413/422)
│   ├── ProviderRateLimited (429)     upstream 429; carries retry_after
│   ├── ProviderUnavailable (503)     upstream 5xx, overloaded, or unreachable
│   ├── ProviderTimeout (504)         no first token, or silence between chunks, too long
│   └── ProviderStreamBroken (502)    stream cut, garbage frame, or ended without finishing
├── EndpointNotFound (404)            no endpoint of that name is configured
├── ProviderNotImplemented (501)      the endpoint's provider has no adapter yet
└── ProviderSdkMissing (500)          the vendor SDK is not installed
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, ClassVar

from relaychat.errors import AppError, ErrorCode

# Long opaque tokens in upstream messages may be (masked) keys; we never pass them on.
_OPAQUE_TOKEN = re.compile(r"[A-Za-z0-9_\-]{24,}")
MAX_UPSTREAM_MESSAGE = 300


def scrub(message: str | None) -> str | None:
    """An upstream message shortened and stripped of anything that looks like a key."""
    if not message:
        return None
    return _OPAQUE_TOKEN.sub("…", message)[:MAX_UPSTREAM_MESSAGE]


class ProviderError(AppError):
    """Base of upstream failures; `fields` hold the endpoint and the upstream status."""

    code = ErrorCode.PROVIDER_ERROR
    status = 502
    title = "The model provider returned an error"
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(detail, headers=headers, **fields)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after


class ProviderAuthFailed(ProviderError):
    code = ErrorCode.PROVIDER_AUTH_FAILED
    title = "The model provider rejected our credentials"


class ProviderBadRequest(ProviderError):
    code = ErrorCode.PROVIDER_BAD_REQUEST
    status = 400
    title = "The model provider rejected the request"


class ProviderRateLimited(ProviderError):
    code = ErrorCode.PROVIDER_RATE_LIMITED
    status = 429
    title = "The model provider is rate limiting us"
    default_retryable = True

    def __init__(
        self,
        detail: str | None = None,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        **fields: Any,
    ) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__(
            detail, retryable=retryable, retry_after=retry_after, headers=headers, **fields
        )


class ProviderUnavailable(ProviderError):
    code = ErrorCode.PROVIDER_UNAVAILABLE
    status = 503
    title = "The model provider is unavailable"
    default_retryable = True


class ProviderTimeout(ProviderError):
    code = ErrorCode.PROVIDER_TIMEOUT
    status = 504
    title = "The model provider did not answer in time"


class ProviderStreamBroken(ProviderError):
    code = ErrorCode.PROVIDER_STREAM_BROKEN
    title = "The model provider's stream broke off"


class EndpointNotFound(AppError):
    code = ErrorCode.ENDPOINT_NOT_FOUND
    status = 404
    title = "No such LLM endpoint"


class ProviderNotImplemented(AppError):
    code = ErrorCode.PROVIDER_NOT_IMPLEMENTED
    status = 501
    title = "This provider is not supported yet"


class ProviderSdkMissing(AppError):
    code = ErrorCode.PROVIDER_SDK_MISSING
    status = 500
    title = "The provider's SDK is not installed"


# Error `type`s (Anthropic) and `type`/`code`s (OpenAI) seen in bodies and mid-stream events.
_ERRORS_BY_TYPE: dict[str, type[ProviderError]] = {
    "authentication_error": ProviderAuthFailed,
    "permission_error": ProviderAuthFailed,
    "invalid_api_key": ProviderAuthFailed,
    "invalid_request_error": ProviderBadRequest,
    "not_found_error": ProviderBadRequest,
    "request_too_large": ProviderBadRequest,
    "rate_limit_error": ProviderRateLimited,
    "rate_limit_exceeded": ProviderRateLimited,
    "insufficient_quota": ProviderRateLimited,
    "api_error": ProviderUnavailable,
    "overloaded_error": ProviderUnavailable,
    "server_error": ProviderUnavailable,
}


def error_for_status(
    status: int, *, message: str | None, retry_after: float | None = None, **fields: Any
) -> ProviderError:
    """The error for an upstream HTTP status."""
    detail = scrub(message)
    fields["upstream_status"] = status
    if status in (401, 403):
        return ProviderAuthFailed(detail, **fields)
    if status == 429:
        return ProviderRateLimited(detail, retry_after=retry_after, **fields)
    # 408 and 409 are the upstream asking us to try again (OpenAI uses 409 for lock timeouts).
    if status >= 500 or status in (408, 409):
        return ProviderUnavailable(detail, retry_after=retry_after, **fields)
    if 400 <= status < 500:
        return ProviderBadRequest(detail, **fields)
    return ProviderError(detail, **fields)


def error_for_type(kind: str | None, *, message: str | None, **fields: Any) -> ProviderError:
    """The error for an error object without an HTTP status, such as a mid-stream error event."""
    cls = _ERRORS_BY_TYPE.get(kind or "", ProviderError)
    if kind:
        fields["upstream_type"] = kind
    return cls(scrub(message), **fields)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None
