"""Application errors: each carries a stable code and HTTP status; one handler renders them.

AppError
├── BadRequest (400)
├── Unauthenticated (401)
│   ├── InvalidCredentials
│   ├── InvalidToken
│   │   ├── UserGone
│   │   └── SessionEnded
│   └── RefreshTokenReused
├── Forbidden (403)
│   ├── RegistrationClosed
│   ├── UserDisabled
│   └── WrongPassword
├── NotFound (404)
│   ├── ConversationNotFound
│   ├── MessageNotFound
│   └── UserNotFound
├── Conflict (409)
│   ├── EmailTaken
│   ├── PhoneNumberTaken
│   ├── LastAdmin
│   ├── CannotDisableSelf
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
│   └── BudgetExceeded (relaychat.domain.usage.budget)
└── ServiceUnavailable (503)

Feature modules add their own leaves next to the code that raises them (relaychat.llm.errors,
relaychat.domain.access.keys, …). Every code, wherever its class lives, is a member of `ErrorCode`
below; the README's "Errors" table lists them with their HTTP status.
"""

from __future__ import annotations

from enum import StrEnum, unique
from typing import Any, ClassVar

from relaychat import logs


@unique
class ErrorCode(StrEnum):
    """Every `code` a client may see in a problem+json body or a failed reply.

    One list, so a code cannot be spelled two ways; the values are the wire format and never
    change. tests/test_error_codes.py checks that each member is used and is in the README.
    """

    # -- generic, one per HTTP status; also what a plain HTTP error of that status says
    #: an unexpected failure on our side (the log has the traceback)
    INTERNAL_ERROR = "internal_error"
    #: the request is malformed in a way no more specific code names
    BAD_REQUEST = "bad_request"
    #: authentication is required and no valid credential was sent
    UNAUTHENTICATED = "unauthenticated"
    #: the caller may not do this
    FORBIDDEN = "forbidden"
    #: no resource has this name (or it is someone else's)
    NOT_FOUND = "not_found"
    #: the path exists but not for this method (`Allow` lists those that do)
    METHOD_NOT_ALLOWED = "method_not_allowed"
    #: no representation matches the request's `Accept`
    NOT_ACCEPTABLE = "not_acceptable"
    #: the request conflicts with the current state
    CONFLICT = "conflict"
    #: the request body is over the size limit
    PAYLOAD_TOO_LARGE = "payload_too_large"
    #: the body is not in a media type this route reads
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    #: the request is well-formed but cannot be carried out
    UNPROCESSABLE = "unprocessable"
    #: too many requests; `Retry-After` says when to try again
    RATE_LIMITED = "rate_limited"
    #: a dependency is down; try again later
    SERVICE_UNAVAILABLE = "service_unavailable"
    #: any other HTTP error, with its own status
    HTTP_ERROR = "http_error"
    # -- requests and accounts
    #: a field is missing or invalid; `field` and `errors` name them
    VALIDATION_ERROR = "validation_error"
    #: the body is not UTF-8, not JSON, or nested too deep
    MALFORMED_JSON = "malformed_json"
    #: the email or the password is wrong
    INVALID_CREDENTIALS = "invalid_credentials"
    #: the access or refresh token is invalid or expired
    INVALID_TOKEN = "invalid_token"
    #: a refresh token was used twice; its whole session family was revoked
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    #: registration is closed to new users
    REGISTRATION_CLOSED = "registration_closed"
    #: the email is already registered
    EMAIL_TAKEN = "email_taken"
    #: the phone number belongs to another user
    PHONE_NUMBER_TAKEN = "phone_number_taken"
    #: the password is too weak
    WEAK_PASSWORD = "weak_password"
    #: the phone number cannot be read as E.164
    INVALID_PHONE_NUMBER = "invalid_phone_number"
    #: no such user
    USER_NOT_FOUND = "user_not_found"
    #: only an admin may do this
    ADMIN_REQUIRED = "admin_required"
    #: an admin disabled this account: it cannot sign in, and its tokens and API keys are refused
    USER_DISABLED = "user_disabled"
    #: the current password given to change it is wrong
    WRONG_PASSWORD = "wrong_password"
    #: the change would leave no enabled admin
    LAST_ADMIN = "last_admin"
    #: an admin cannot disable their own account
    CANNOT_DISABLE_SELF = "cannot_disable_self"
    # -- conversations and messages
    #: no such conversation (or it is someone else's)
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    #: a conversation with this id already exists
    CONVERSATION_EXISTS = "conversation_exists"
    #: the conversation id breaks the id rule
    INVALID_CONVERSATION_ID = "invalid_conversation_id"
    #: the id names a phone number's thread that only its owner may hold
    CONVERSATION_ID_RESERVED = "conversation_id_reserved"
    #: the sender's thread belongs to another user
    CONVERSATION_THREAD_TAKEN = "conversation_thread_taken"
    #: no such message (or it is someone else's)
    MESSAGE_NOT_FOUND = "message_not_found"
    #: the parent message is not in this conversation
    PARENT_NOT_IN_CONVERSATION = "parent_not_in_conversation"
    #: the search query has no word to look for (only operators, or only excluded words)
    SEARCH_QUERY_EMPTY = "search_query_empty"
    # -- export and import
    #: the uploaded file is not UTF-8 JSON, or in no format relaychat imports
    IMPORT_UNREADABLE = "import_unreadable"
    #: the file holds more conversations than one import may (IMPORT_MAX_CONVERSATIONS)
    IMPORT_TOO_MANY_CONVERSATIONS = "import_too_many_conversations"
    #: (an import's refused conversation) more messages than IMPORT_MAX_MESSAGES
    IMPORT_TOO_MANY_MESSAGES = "import_too_many_messages"
    #: (an import's refused conversation) its tree, roles or fields cannot be stored as they are
    IMPORT_CONVERSATION_INVALID = "import_conversation_invalid"
    # -- replies, models and agents
    #: no such generation
    GENERATION_NOT_FOUND = "generation_not_found"
    #: the conversation has no endpoint to answer with
    NO_ENDPOINT = "no_endpoint"
    #: no model is configured for the endpoint
    NO_MODEL = "no_model"
    #: no LLM endpoint has this name
    ENDPOINT_NOT_FOUND = "endpoint_not_found"
    #: the model provider returned an error
    PROVIDER_ERROR = "provider_error"
    #: the model provider rejected our credentials
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    #: the model provider refused the request
    PROVIDER_BAD_REQUEST = "provider_bad_request"
    #: the model provider is rate limiting us
    PROVIDER_RATE_LIMITED = "provider_rate_limited"
    #: the model provider is down, overloaded or unreachable
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    #: the model provider did not answer in time
    PROVIDER_TIMEOUT = "provider_timeout"
    #: the model provider's stream broke off
    PROVIDER_STREAM_BROKEN = "provider_stream_broken"
    #: the endpoint's provider has no adapter yet
    PROVIDER_NOT_IMPLEMENTED = "provider_not_implemented"
    #: the provider's SDK is not installed (the detail names the extra)
    PROVIDER_SDK_MISSING = "provider_sdk_missing"
    #: no such agent (or it is private to someone else)
    AGENT_NOT_FOUND = "agent_not_found"
    #: only the agent's owner or an admin may change it
    AGENT_READ_ONLY = "agent_read_only"
    #: a conversation with endpoint `agents` needs an `agent_id`
    AGENT_REQUIRED = "agent_required"
    #: no MCP server has this name
    MCP_SERVER_NOT_FOUND = "mcp_server_not_found"
    #: the MCP server cannot be started or reached
    MCP_SERVER_UNAVAILABLE = "mcp_server_unavailable"
    # -- external messages and API keys
    #: external messages need an API key
    API_KEY_REQUIRED = "api_key_required"
    #: the API key is not one we issued
    INVALID_API_KEY = "invalid_api_key"
    #: the API key was revoked
    API_KEY_REVOKED = "api_key_revoked"
    #: the API key has expired
    API_KEY_EXPIRED = "api_key_expired"
    #: a rule of the key's permissions refuses the request; `rule` names it
    PERMISSION_DENIED = "permission_denied"
    #: the API key's `max_tokens_per_day` is spent for today (UTC); `Retry-After` says when
    BUDGET_EXCEEDED = "budget_exceeded"
    #: no such API key
    API_KEY_NOT_FOUND = "api_key_not_found"
    #: the API key is revoked, so it cannot be changed
    API_KEY_INACTIVE = "api_key_inactive"
    #: no user could be found to own the message
    OWNER_UNRESOLVED = "owner_unresolved"
    #: the Idempotency-Key was used with a different request
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    #: the Idempotency-Key is not 1 to 255 visible characters
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    #: the first request with this Idempotency-Key is still being processed
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"
    # -- webhooks
    #: the webhook URL points somewhere we refuse to send (e.g. a private address)
    WEBHOOK_TARGET_REFUSED = "webhook_target_refused"
    #: no such webhook endpoint
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    #: no such delivery
    DELIVERY_NOT_FOUND = "delivery_not_found"
    #: the delivery is being attempted right now
    DELIVERY_IN_FLIGHT = "delivery_in_flight"
    #: a stored secret cannot be decrypted with the configured ENCRYPTION_KEY
    SECRET_UNREADABLE = "secret_unreadable"
    # -- channels (Twilio SMS and WhatsApp)
    #: no such channel
    CHANNEL_NOT_FOUND = "channel_not_found"
    #: the channel is disabled
    CHANNEL_DISABLED = "channel_disabled"
    #: the channel's auth token is not available
    CHANNEL_SECRET_MISSING = "channel_secret_missing"
    #: no user has the sender's phone number
    CHANNEL_SENDER_UNKNOWN = "channel_sender_unknown"
    #: the channel's conversation for this sender belongs to another user
    CHANNEL_THREAD_TAKEN = "channel_thread_taken"
    #: `X-Twilio-Signature` is missing or does not match
    TWILIO_SIGNATURE_INVALID = "twilio_signature_invalid"
    #: the request is for another Twilio account
    TWILIO_ACCOUNT_MISMATCH = "twilio_account_mismatch"
    #: the form is not a Twilio message
    TWILIO_FORM_INVALID = "twilio_form_invalid"
    # -- schedules
    #: no such schedule (or it is someone else's)
    SCHEDULE_NOT_FOUND = "schedule_not_found"
    #: the timezone is not an IANA timezone name
    INVALID_TIMEZONE = "invalid_timezone"
    #: the `at`, `rrule` or `cron` rule is not valid, or never occurs
    INVALID_RECURRENCE = "invalid_recurrence"
    #: the schedule would run more often than SCHEDULE_MIN_INTERVAL_SECONDS allows
    SCHEDULE_TOO_FREQUENT = "schedule_too_frequent"
    #: the user has SCHEDULE_MAX_PER_USER schedules already
    SCHEDULE_LIMIT_REACHED = "schedule_limit_reached"
    # -- the OpenAI-compatible API (/v1)
    #: the model is neither an endpoint model (`<endpoint>/<model>`) nor an agent the caller may use
    MODEL_NOT_FOUND = "model_not_found"
    #: a request parameter relaychat does not support (`n` > 1, logprobs, audio, ...)
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    #: a system key from the environment has no owner to store the call for
    OWNER_REQUIRED = "owner_required"
    #: no stored response has this id (or it is someone else's)
    RESPONSE_NOT_FOUND = "response_not_found"
    # -- share links
    #: no share link has this id or token (or it was revoked, or is someone else's)
    SHARE_NOT_FOUND = "share_not_found"
    #: the conversation has no message to share yet
    NOTHING_TO_SHARE = "nothing_to_share"


class AppError(Exception):
    """Base of every error that reaches a client; subclasses fix `code` and `status`."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
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
        request_id = logs.current_request_id()
        if request_id is not None:
            # What an operator searches the logs for when a user sends them this answer.
            body["request_id"] = request_id
        return body


class BadRequest(AppError):
    code = ErrorCode.BAD_REQUEST
    status = 400
    title = "Bad request"


class Unauthenticated(AppError):
    code = ErrorCode.UNAUTHENTICATED
    status = 401
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **fields: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **fields)


class InvalidCredentials(Unauthenticated):
    code = ErrorCode.INVALID_CREDENTIALS
    title = "Invalid email or password"


class InvalidToken(Unauthenticated):
    code = ErrorCode.INVALID_TOKEN
    title = "Invalid or expired token"


class UserGone(InvalidToken):
    """A valid token of a user who has since been deleted."""

    def __init__(self) -> None:
        super().__init__("the token's user no longer exists")


class SessionEnded(InvalidToken):
    """A valid token of a session that was ended since: signed out everywhere, the password
    changed in another session, or the account disabled."""

    def __init__(self) -> None:
        super().__init__("the session was ended; sign in again")


class RefreshTokenReused(Unauthenticated):
    code = ErrorCode.REFRESH_TOKEN_REUSED
    title = "Refresh token already used; the session was revoked"


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN
    status = 403
    title = "Forbidden"


class RegistrationClosed(Forbidden):
    code = ErrorCode.REGISTRATION_CLOSED
    title = "Registration is closed"


class UserDisabled(Forbidden):
    code = ErrorCode.USER_DISABLED
    title = "The account is disabled"


class WrongPassword(Forbidden):
    """Not `invalid_credentials`: that one is a 401, which tells a client its session is
    over, while here a signed-in user only mistyped the password they are changing."""

    code = ErrorCode.WRONG_PASSWORD
    title = "The current password is wrong"


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND
    status = 404
    title = "Not found"


class ConversationNotFound(NotFound):
    code = ErrorCode.CONVERSATION_NOT_FOUND
    title = "Conversation not found"


class MessageNotFound(NotFound):
    code = ErrorCode.MESSAGE_NOT_FOUND
    title = "Message not found"


class UserNotFound(NotFound):
    code = ErrorCode.USER_NOT_FOUND
    title = "User not found"


class Conflict(AppError):
    code = ErrorCode.CONFLICT
    status = 409
    title = "Conflict"


class EmailTaken(Conflict):
    code = ErrorCode.EMAIL_TAKEN
    title = "Email already registered"


class PhoneNumberTaken(Conflict):
    code = ErrorCode.PHONE_NUMBER_TAKEN
    title = "Phone number belongs to another user"


class LastAdmin(Conflict):
    code = ErrorCode.LAST_ADMIN
    title = "The instance would be left without an enabled admin"


class CannotDisableSelf(Conflict):
    code = ErrorCode.CANNOT_DISABLE_SELF
    title = "An admin cannot disable their own account"


class ConversationExists(Conflict):
    code = ErrorCode.CONVERSATION_EXISTS
    title = "A conversation with this id already exists"


class PayloadTooLarge(AppError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    status = 413
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    status = 415
    title = "Unsupported media type"


class Unprocessable(AppError):
    code = ErrorCode.UNPROCESSABLE
    status = 422
    title = "Unprocessable request"


class ValidationFailed(Unprocessable):
    code = ErrorCode.VALIDATION_ERROR
    title = "Request validation failed"


class MalformedJson(Unprocessable):
    code = ErrorCode.MALFORMED_JSON
    title = "Request body is not valid JSON"


class WeakPassword(Unprocessable):
    code = ErrorCode.WEAK_PASSWORD
    title = "Password too weak"


class InvalidPhoneNumber(Unprocessable):
    code = ErrorCode.INVALID_PHONE_NUMBER
    title = "Invalid phone number"


class ParentNotInConversation(Unprocessable):
    code = ErrorCode.PARENT_NOT_IN_CONVERSATION
    title = "Parent message is not in this conversation"


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED
    status = 429
    title = "Too many requests"


class ServiceUnavailable(AppError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    status = 503
    title = "Service unavailable"
