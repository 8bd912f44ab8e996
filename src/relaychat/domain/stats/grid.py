"""The time grid of a statistics answer: a window, cut into equal buckets aligned to the
bucket size (so two answers, from any worker, cut time at the same instants)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, func, literal, select
from sqlalchemy.sql.selectable import CTE

from relaychat.errors import ValidationFailed

MIN_BUCKET_SECONDS = 60
MAX_BUCKETS = 1000


class StatsWindow(StrEnum):
    """How far back an answer looks."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"


WINDOW_SECONDS = {StatsWindow.HOUR: 3600, StatsWindow.DAY: 86400, StatsWindow.WEEK: 7 * 86400}
DEFAULT_BUCKET_SECONDS = {StatsWindow.HOUR: 60, StatsWindow.DAY: 900, StatsWindow.WEEK: 3600}


@dataclass(frozen=True, slots=True)
class Bucket:
    """One step of the grid: [start, end)."""

    index: int
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Grid:
    """Buckets from the one holding `until - window` to the one holding `until`."""

    window: StatsWindow
    bucket_seconds: int
    # Epoch seconds of the first bucket's start, a multiple of bucket_seconds.
    first: int
    count: int
    until: datetime

    @property
    def since(self) -> datetime:
        """The start of the first bucket."""
        return self.start(0)

    @property
    def end(self) -> datetime:
        """The end of the last bucket (just after `until`)."""
        return self.start(self.count)

    def start(self, index: int) -> datetime:
        return datetime.fromtimestamp(self.first + index * self.bucket_seconds, UTC)

    def buckets(self) -> list[Bucket]:
        return [Bucket(i, self.start(i), self.start(i + 1)) for i in range(self.count)]


def make_grid(window: StatsWindow, bucket_seconds: int | None, now: datetime) -> Grid:
    """The grid of `window` ending at `now`; 422 naming `bucket` for a size that gives more
    than MAX_BUCKETS buckets, is under MIN_BUCKET_SECONDS or is longer than the window."""
    length = WINDOW_SECONDS[window]
    step = DEFAULT_BUCKET_SECONDS[window] if bucket_seconds is None else bucket_seconds
    if step < MIN_BUCKET_SECONDS:
        raise ValidationFailed(f"bucket must be at least {MIN_BUCKET_SECONDS} s", field="bucket")
    if step > length:
        raise ValidationFailed(f"bucket must be at most the window ({length} s)", field="bucket")
    # A window that does not start on a bucket boundary spans one bucket more than it
    # holds whole: refuse on the most it can give, so the answer never depends on the
    # moment it was asked.
    if math.ceil(length / step) + 1 > MAX_BUCKETS:
        raise ValidationFailed(
            f"bucket gives more than {MAX_BUCKETS} buckets over {window.value}; at least "
            f"{math.ceil(length / (MAX_BUCKETS - 1))} s",
            field="bucket",
        )
    moment = int(now.timestamp())
    first = (moment - length) // step * step
    last = moment // step * step
    return Grid(window, step, first, (last - first) // step + 1, now.replace(microsecond=0))


def integers(count: int, name: str = "n") -> CTE:
    """0, 1, ..., count - 1 as a recursive common table expression `name(i)` (the same
    on SQLite and PostgreSQL)."""
    numbers = select(literal(0, Integer).label("i")).cte(name, recursive=True)
    return numbers.union_all(
        select(numbers.c.i + 1).where(numbers.c.i + 1 < literal(count, Integer))
    )


def at_epoch(dialect: str, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """The moment `seconds` after the epoch, comparable with the stored times.

    SQLite keeps times as `YYYY-MM-DD HH:MM:SS.ffffff` text (UTC, storage/types.py), whose
    text order is time order; this is the same text to the millisecond, which compares
    right with it (bounds computed here are whole seconds, or thousandths for samples).
    """
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", seconds, "unixepoch")
    return func.to_timestamp(seconds)


def bucket_table(grid: Grid, dialect: str) -> CTE:
    """The grid's buckets as a common table expression `buckets(i, lo, hi)`, computed by
    the database from the first bucket's epoch seconds and the bucket size, so the
    statement is the same for every grid (compiled once, whatever the bucket count)."""
    numbers = integers(grid.count)
    start = literal(grid.first, BigInteger) + numbers.c.i * literal(grid.bucket_seconds, Integer)
    end = start + literal(grid.bucket_seconds, Integer)
    return select(
        numbers.c.i, at_epoch(dialect, start).label("lo"), at_epoch(dialect, end).label("hi")
    ).cte("buckets")
