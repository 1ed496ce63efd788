"""pipeline/sqlite.py: a connection per thread and per process, WAL, and write transactions that roll back."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest

from pipeline.sqlite import Connections, immediate


def test_each_thread_has_its_own_connection_in_wal_with_the_durability_asked(tmp_path):
    conns = Connections(tmp_path / "a.db", synchronous="FULL", row_factory=sqlite3.Row)
    mine = conns()
    assert conns() is mine
    other = []
    t = threading.Thread(target=lambda: other.append(conns()))
    t.start()
    t.join()
    assert other[0] is not mine
    assert mine.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert mine.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert Connections(tmp_path / "b.db")().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert isinstance(mine.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)


def _child_writes(conns: Connections, parent_id: int, out) -> None:
    c = conns()
    with immediate(c):
        c.execute("INSERT INTO t VALUES (2)")
    out.put(id(c) != parent_id)


def test_a_forked_child_opens_its_own_connection(tmp_path):
    conns = Connections(tmp_path / "c.db")
    conns().execute("CREATE TABLE t (x INTEGER)")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_writes, args=(conns, id(conns()), out))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and out.get(timeout=5) is True
    assert conns().execute("SELECT x FROM t").fetchall() == [(2,)]


def test_a_write_that_raises_leaves_the_previous_state(tmp_path):
    c = Connections(tmp_path / "d.db")()
    c.execute("CREATE TABLE t (x INTEGER)")
    with immediate(c):
        c.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), immediate(c):
        c.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("dies halfway")
    assert c.execute("SELECT x FROM t").fetchall() == [(1,)]
