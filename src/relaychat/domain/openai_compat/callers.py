"""Who calls the OpenAI-compatible API: a person's access token or an API key, as one owner."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from relaychat.domain.access import keys
from relaychat.domain.usage import budget
from relaychat.errors import BadRequest, ErrorCode, Forbidden, NotFound


class ModelNotFound(NotFound):
    code = ErrorCode.MODEL_NOT_FOUND
    title = "No such model"


class UnsupportedParameter(BadRequest):
    code = ErrorCode.UNSUPPORTED_PARAMETER
    title = "Unsupported parameter"


class OwnerRequired(Forbidden):
    code = ErrorCode.OWNER_REQUIRED
    title = "A key with an owner is required"


@dataclass(frozen=True)
class ApiCaller:
    """The owner every call is stored for, and the key it came with (None: a person's token)."""

    owner_id: str
    principal: keys.KeyPrincipal | None = None

    @classmethod
    def of_key(cls, principal: keys.KeyPrincipal) -> ApiCaller:
        """A key's caller; a system key (from the environment) has no owner to store calls for."""
        if principal.owner_id is None:
            raise OwnerRequired(
                "a system key has no owner to store the conversation for: use a key made "
                "with /api/keys or the CLI"
            )
        return cls(principal.owner_id, principal)

    @property
    def key_id(self) -> str | None:
        """The key's id, recorded on the messages it made."""
        return self.principal.key_ref if self.principal else None

    def may_use_endpoint(self, endpoint: str) -> bool:
        allowed = self.principal.permissions.allowed_endpoints if self.principal else None
        return allowed is None or endpoint in allowed

    def may_use_agent(self, agent_id: str) -> bool:
        allowed = self.principal.permissions.allowed_agents if self.principal else None
        return allowed is None or agent_id in allowed

    def check_endpoint(self, endpoint: str) -> None:
        if self.principal is not None:
            keys.check_endpoint(self.principal.permissions, endpoint)

    def check_agent(self, agent_id: str) -> None:
        if self.principal is not None:
            keys.check_agent(self.principal.permissions, agent_id)

    def check_conversation(self, conversation_id: str) -> None:
        if self.principal is not None:
            keys.check_conversation(self.principal.permissions, conversation_id)

    def check_respond(self) -> None:
        if self.principal is not None:
            keys.check_respond(self.principal.permissions)

    @property
    def has_budget(self) -> bool:
        """Whether the key has a daily token budget (checking it reads the database)."""
        return (
            self.principal is not None and self.principal.permissions.max_tokens_per_day is not None
        )

    async def check_budget(self, session: AsyncSession) -> None:
        """A key over its daily token budget gets no reply (429 `budget_exceeded`)."""
        if self.principal is not None:
            await budget.check_budget(session, self.principal.key_ref, self.principal.permissions)

    def check_unstored(self) -> None:
        """`store: false` leaves no reply row, and reply rows are what a key's daily budget
        counts: a key with a budget must store its calls, or it could spend without limit."""
        if self.has_budget:
            raise UnsupportedParameter(
                "this key has a daily token budget, which counts stored replies: "
                "`store: false` is not allowed with it",
                field="store",
            )
