"""Application errors: each carries a stable code and HTTP status; one handler renders them.

AppError
├── BadRequest (400)
├── Unauthenticated (401)
│   ├── InvalidCredentials
│   ├── InvalidToken
│   └── RefreshTokenReused
├── Forbidden (403)
│   └── RegistrationClosed
├── NotFound (404)
│   ├── ConversationNotFound
│   ├── MessageNotFound
│   └── UserNotFound
├── Conflict (409)
│   ├── EmailTaken
│   ├── PhoneNumberTaken
│   └── ConversationExists
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── Unprocessable (422)
│   ├── ValidationFailed
│   ├── MalformedJson
│   ├── WeakPassword
│   ├── InvalidPhoneNumber
│   └── ParentNotInConversation
├── RateLimited (429)
└── ServiceUnavailable (503)

Feature modules add their own leaves next to the code that raises them: relaychat.llm.errors
(provider_*, endpoint_not_found), relaychat.llm.mcp (mcp_server_*), relaychat.domain.agents
(agent_not_found, agent_read_only), relaychat.domain.generations (generation_not_found,
no_endpoint, no_model), relaychat.domain.replies (agent_required), relaychat.domain.idempotency
(idempotency_key_reused, idempotency_key_invalid, idempotency_in_flight), relaychat.domain.keys
(invalid_api_key, api_key_revoked, api_key_expired, permission_denied, admin_required,
api_key_not_found, api_key_inactive), relaychat.domain.resolution (owner_unresolved),
relaychat.gateway.external
(api_key_required), relaychat.safehttp (webhook_target_refused), relaychat.domain.webhooks
(webhook_not_found, delivery_not_found), relaychat.crypto (secret_unreadable),
relaychat.domain.channels (channel_not_found, channel_disabled, channel_secret_missing,
channel_sender_unknown), relaychat.domain.channel_threads (channel_thread_taken),
relaychat.domain.conversation_ids (invalid_conversation_id, conversation_id_reserved,
conversation_thread_taken),
relaychat.gateway.channels.twilio (twilio_signature_invalid,
twilio_account_mismatch, twilio_form_invalid).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error that reaches a client; subclasses fix `code` and `status`."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.fields = fields

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem details, plus our stable `code` and any extra fields."""
        body: dict[str, Any] = {
            "type": f"urn:relaychat:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.fields)
        return body


class BadRequest(AppError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class Unauthenticated(AppError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **fields: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **fields)


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    title = "Invalid email or password"


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    title = "Invalid or expired token"


class RefreshTokenReused(Unauthenticated):
    code = "refresh_token_reused"
    title = "Refresh token already used; the session was revoked"


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class RegistrationClosed(Forbidden):
    code = "registration_closed"
    title = "Registration is closed"


class NotFound(AppError):
    code = "not_found"
    status = 404
    title = "Not found"


class ConversationNotFound(NotFound):
    code = "conversation_not_found"
    title = "Conversation not found"


class MessageNotFound(NotFound):
    code = "message_not_found"
    title = "Message not found"


class UserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"


class Conflict(AppError):
    code = "conflict"
    status = 409
    title = "Conflict"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class PhoneNumberTaken(Conflict):
    code = "phone_number_taken"
    title = "Phone number belongs to another user"


class ConversationExists(Conflict):
    code = "conversation_exists"
    title = "A conversation with this id already exists"


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class Unprocessable(AppError):
    code = "unprocessable"
    status = 422
    title = "Unprocessable request"


class ValidationFailed(Unprocessable):
    code = "validation_error"
    title = "Request validation failed"


class MalformedJson(Unprocessable):
    code = "malformed_json"
    title = "Request body is not valid JSON"


class WeakPassword(Unprocessable):
    code = "weak_password"
    title = "Password too weak"


class InvalidPhoneNumber(Unprocessable):
    code = "invalid_phone_number"
    title = "Invalid phone number"


class ParentNotInConversation(Unprocessable):
    code = "parent_not_in_conversation"
    title = "Parent message is not in this conversation"


class RateLimited(AppError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class ServiceUnavailable(AppError):
    code = "service_unavailable"
    status = 503
    title = "Service unavailable"
