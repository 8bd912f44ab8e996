"""SQLite statements in one trip to aiosqlite's thread, rather than four.

aiosqlite runs each call on the SQLite connection in a thread of its own, and SQLAlchemy's
adapter makes four such calls per statement: open a cursor, execute, fetch the rows, close
the cursor. Each is a hand-off to the thread and back to the event loop, where the result
waits behind everything else the loop has to do: with hundreds of replies streaming, a
request's dozen statements waited for some fifty turns of a busy loop. This cursor does
all four in one function on the thread, and keeps what SQLAlchemy reads afterwards
(description, rowcount, lastrowid, the rows).

Installed on each new connection by `storage.db.create_engine` (`use_one_trip_cursors`).
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# What one statement left behind: the rows (None: it returned none), description,
# rowcount, lastrowid, and whether the connection is in a transaction after it.
_Outcome = tuple[list[Any] | None, Any, int, int | None, bool]

# Set on aiosqlite's connection object: whether its SQLite connection may be in a
# transaction (True when not known). The pool rolls back every connection given back to
# it, a trip to the thread even after a commit; with this, only when there is something
# to roll back.
_IN_TRANSACTION = "_relaychat_in_transaction"


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: the whole statement, its cursor closed."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return (
            rows,
            cursor.description,
            cursor.rowcount,
            cursor.lastrowid,
            connection.in_transaction,
        )
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, each statement one call on aiosqlite's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    _awaitable_cursor_close = False  # there is no cursor left open to close

    def __init__(self, adapt_connection: Any) -> None:  # no cursor opened up front
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None before any insert

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            await_(self._one_trip(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            await_(self._one_trip(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _one_trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection = self._connection
        async with self._adapt_connection._execute_mutex:
            setattr(connection, _IN_TRANSACTION, True)  # a statement that fails may have begun one
            outcome: _Outcome = await connection._execute(
                _run, connection._conn, operation, parameters, many
            )
            rows, self._description, self._rowcount, self._lastrowid, in_transaction = outcome
            setattr(connection, _IN_TRANSACTION, in_transaction)
        self._rows = collections.deque(rows) if rows is not None else collections.deque()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection, handing out `OneTripCursor`s."""

    __slots__ = ()

    _cursor_cls = OneTripCursor

    def rollback(self) -> None:
        if getattr(self._connection, _IN_TRANSACTION, True):
            super().rollback()
            setattr(self._connection, _IN_TRANSACTION, False)

    def commit(self) -> None:
        if getattr(self._connection, _IN_TRANSACTION, True):
            super().commit()
            setattr(self._connection, _IN_TRANSACTION, False)


def use_one_trip_cursors(dbapi_connection: Any) -> None:
    """Make a new SQLAlchemy aiosqlite connection hand out `OneTripCursor`s (same layout:
    only the class changes)."""
    if type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneTripConnection
