"""SQLite files shared by threads and processes: one connection per thread, and a write transaction that takes
the database's write lock first.

``Connections(path)`` opens a file's connection for the calling thread on first use (again in a forked
child, which must not use its parent's): autocommit (``isolation_level=None``: transactions are explicit),
WAL, so readers never wait for a writer, and a 30 s wait for a lock. ``synchronous``: ``NORMAL`` (a crash of
the machine may lose the last commits, never the file) or ``FULL`` (a commit is on disk when it returns).

``immediate(conn)``: ``BEGIN IMMEDIATE`` takes the lock when the transaction starts (waiting up to the
connection's timeout), so two writers in different processes queue instead of one failing halfway with
"database is locked"; a failure inside rolls back, so a write that dies leaves the previous state.

Used by the identify journal (pipeline/references/journal.py) and the answer cache
(pipeline/answer_cache.py). The label-studio-ml contract's per-project cache (backends/base/cache.py) has
its own few lines of the same: it imports no application code."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterator, Literal, Optional, Union

LOCK_TIMEOUT = 30.0  # seconds a connection waits for another's lock


class Connections:
    """``connections()`` -> this thread's connection to the SQLite file at ``path`` (opened on first use)."""

    def __init__(self, path: Union[str, os.PathLike], synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                 row_factory: Optional[type] = None):
        self.path = Path(path)
        self.synchronous = synchronous
        self.row_factory = row_factory
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # a forked child opens its own
            conn = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
            if self.row_factory is not None:
                conn.row_factory = self.row_factory
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn


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
