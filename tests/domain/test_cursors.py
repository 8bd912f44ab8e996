"""Keyset cursors: what one encodes is what it decodes; anything else is a 422 on `cursor`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from relaychat.domain.cursors import decode_cursor, encode_cursor
from relaychat.errors import ValidationFailed


def test_round_trip() -> None:
    at = datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(at, "row-7")) == (at, "row-7")


def _forged(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        _forged("just a string"),
        _forged(["2026-12-04T09:30:00+00:00"]),
        _forged(["yesterday", "row-1"]),
        _forged(["2026-12-04T09:30:00", "row-1"]),  # no zone: never issued by this server
    ],
)
def test_anything_else_is_refused_on_the_cursor_field(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor)
    assert refused.value.fields["field"] == "cursor"
