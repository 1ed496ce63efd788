"""Per-project key/value store for model state (model_version, label config, extra params).

SQLite under MODEL_DIR, shared by every gunicorn worker and thread: no in-process read cache,
so a value set by one worker is what the next request sees in another. Its connection code is its own
(a connection per thread and process, WAL, autocommit): the contract imports no application code, so
it cannot use label-factory's ``pipeline/sqlite.py``."""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Optional

from backends.base import settings

_SCHEMA = """CREATE TABLE IF NOT EXISTS cache (
    project_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (project_id, key))"""


class SqliteCache:
    """``cache[project_id, key]`` -> str or None; values must be strings (as upstream)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as c:
            c.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def __getitem__(self, project_key: tuple) -> Optional[str]:
        project_id, key = project_key
        row = self._conn().execute("SELECT value FROM cache WHERE project_id = ? AND key = ?",
                                   (str(project_id), key)).fetchone()
        return None if row is None else row[0]

    def __setitem__(self, project_key: tuple, value: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"cache values must be strings, got {type(value).__name__}")
        project_id, key = project_key
        self._conn().execute("REPLACE INTO cache (project_id, key, value) VALUES (?, ?, ?)",
                             (str(project_id), key, value))

    def __delitem__(self, project_key: tuple) -> None:
        project_id, key = project_key
        self._conn().execute("DELETE FROM cache WHERE project_id = ? AND key = ?", (str(project_id), key))

    def __contains__(self, project_key: tuple) -> bool:
        project_id, key = project_key
        return self._conn().execute("SELECT 1 FROM cache WHERE project_id = ? AND key = ?",
                                    (str(project_id), key)).fetchone() is not None


_caches: dict[str, SqliteCache] = {}  # MODEL_DIR -> its SqliteCache
_caches_lock = threading.Lock()


def create_cache(cache_type: str = "sqlite", path: str | os.PathLike | None = None) -> SqliteCache:
    if cache_type != "sqlite":
        raise ValueError(f"unsupported cache type {cache_type!r} (only 'sqlite')")
    return SqliteCache(Path(path or settings.current().model_dir) / "cache.db")


def get_cache() -> SqliteCache:
    """The process-wide cache for the current MODEL_DIR (re-read each call, so tests can switch it)."""
    contract = settings.current()
    model_dir = os.path.abspath(contract.model_dir)
    with _caches_lock:
        if model_dir not in _caches:
            _caches[model_dir] = create_cache(contract.cache_type, model_dir)
        return _caches[model_dir]
