"""SQLite shared by processes: a write transaction that takes the database's write lock first.

``BEGIN IMMEDIATE`` takes the lock when the transaction starts (waiting up to the connection's timeout), so
two writers in different processes queue instead of one failing halfway with "database is locked"; a
failure inside rolls back, so a write that dies leaves the previous state. Used by the identify journal
(pipeline/references/journal.py) and the answer cache (pipeline/answer_cache.py); their connections are in
autocommit mode (``isolation_level=None``) and WAL, so readers never wait for a writer."""
from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``conn``: committed when the block ends, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
