"""A reply cut into Twilio message bodies: whole words, within the limit in UTF-16 units."""

from __future__ import annotations

from relaychat.domain.telephony.channel_replies import MAX_BODY_UNITS, split_body


def test_short_text_is_one_part() -> None:
    assert split_body("  Hello there.  ") == ["Hello there."]
    assert split_body("   ") == []


def test_long_text_is_cut_at_whitespace_within_the_limit() -> None:
    words = [f"word{i:04d}" for i in range(500)]  # 500 x 9 characters, spaces between
    parts = split_body(" ".join(words))
    assert len(parts) == 3
    assert all(len(part) <= MAX_BODY_UNITS for part in parts)
    assert " ".join(parts).split() == words  # nothing lost, no word cut in two


def test_emoji_count_twice_and_a_word_longer_than_a_part_is_cut() -> None:
    parts = split_body("😀" * 900)  # 1800 UTF-16 units
    assert [len(p) for p in parts] == [800, 100]
    assert split_body("x" * 3300, limit=1600) == ["x" * 1600, "x" * 1600, "x" * 100]
