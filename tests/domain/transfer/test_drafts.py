"""What no reader may hand to the importer: a tree that is not one, text a database would
refuse or keep differently, values longer than their columns. Pure checks, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relaychat.domain.transfer.drafts import (
    ConversationInvalid,
    DraftConversation,
    DraftMessage,
    TooManyMessages,
    check_draft,
)
from relaychat.statuses import MessageRole

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def message(mid: str, parent: str | None, minute: int, text: str = "hi") -> DraftMessage:
    return DraftMessage(
        id=mid,
        parent_id=parent,
        role=MessageRole.USER,
        content=[{"type": "text", "text": text}],
        text=text,
        created_at=T0 + timedelta(minutes=minute),
    )


def draft(*messages: DraftMessage, title: str | None = "t") -> DraftConversation:
    return DraftConversation(
        id="c", title=title, created_at=T0, updated_at=T0, messages=list(messages)
    )


def test_parents_come_before_their_children_siblings_oldest_first() -> None:
    ordered = check_draft(
        draft(
            message("reply-late", "root", 3),
            message("grandchild", "reply-early", 4),
            message("reply-early", "root", 2),
            message("root", None, 1),
        ),
        max_messages=10,
    )
    assert [m.id for m in ordered] == ["root", "reply-early", "grandchild", "reply-late"]


def test_a_long_chain_is_no_recursion_problem() -> None:
    chain = [message("m0", None, 0)]
    chain += [message(f"m{i}", f"m{i - 1}", i) for i in range(1, 5000)]
    assert len(check_draft(draft(*reversed(chain)), max_messages=5000)) == 5000


@pytest.mark.parametrize(
    ("messages", "field", "words"),
    [
        ((message("a", None, 0), message("a", None, 1)), "messages[1].id", "two messages"),
        ((message("a", "gone", 0),), "messages[0].parent_message_id", "not in the conversation"),
        ((message("a", "b", 0), message("b", "a", 1)), "messages", "cycle"),
        ((message("a", None, 0, text="nul\x00"),), "messages[0].text", "NUL"),
    ],
)
def test_broken_conversations_are_refused_naming_the_field(
    messages: tuple[DraftMessage, ...], field: str, words: str
) -> None:
    with pytest.raises(ConversationInvalid) as refused:
        check_draft(draft(*messages), max_messages=10)
    assert refused.value.fields["field"] == field
    assert words in refused.value.detail


def test_values_longer_than_their_columns_are_refused() -> None:
    with pytest.raises(ConversationInvalid) as refused:
        check_draft(draft(message("a", None, 0), title="x" * 501), max_messages=10)
    assert refused.value.fields["field"] == "title"
    long_sender = message("a", None, 0)
    long_sender.sender = "s" * 201
    with pytest.raises(ConversationInvalid) as refused:
        check_draft(draft(long_sender), max_messages=10)
    assert refused.value.fields["field"] == "messages[0].sender"


def test_more_messages_than_allowed_is_its_own_refusal() -> None:
    with pytest.raises(TooManyMessages):
        check_draft(draft(message("a", None, 0), message("b", "a", 1)), max_messages=1)


def test_token_counts_fit_their_columns() -> None:
    huge = message("a", None, 0)
    huge.prompt_tokens = 2**31
    with pytest.raises(ConversationInvalid) as refused:
        check_draft(draft(huge), max_messages=10)
    assert refused.value.fields["field"] == "messages[0].prompt_tokens"
