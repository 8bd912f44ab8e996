"""Keyset cursors of the paged listings: the sort time and id of a page's last row.

A cursor is opaque to clients (URL-safe base64 of a JSON pair) and only says where the
next page starts: it grants nothing, so it needs no signature; the query that reads it is
scoped to the caller like the first page was.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from relaychat.errors import ValidationFailed


def encode_cursor(at: datetime, row_id: str) -> str:
    """The cursor that continues after the row sorted at `at` with id `row_id`."""
    raw = json.dumps([at.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The time and id a cursor holds; 422 `validation_error` (field `cursor`) for anything
    this server did not issue, including a time without a zone (every stored time has one)."""
    refused = ValidationFailed("cursor is not one this server issued", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        moment = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise refused from exc
    if moment.tzinfo is None:
        raise refused
    return moment, str(row_id)


def encode_rank_cursor(rank: float, row_id: int) -> str:
    """The cursor of a ranked listing (search): the last row's sort key and id."""
    raw = json.dumps([rank, row_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_rank_cursor(cursor: str) -> tuple[float, int]:
    """The sort key and id a ranked cursor holds; 422 `validation_error` (field `cursor`)
    for anything else."""
    refused = ValidationFailed("cursor is not one this server issued", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        rank, row_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise refused from exc
    if not isinstance(rank, float | int) or isinstance(rank, bool) or not isinstance(row_id, int):
        raise refused
    return float(rank), row_id
