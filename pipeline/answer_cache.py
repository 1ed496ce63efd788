"""The answer cache: every model answer on disk, so a re-run (other thresholds, a calibration, a
re-evaluation) asks no model what it already answered.

What is kept: a VLM's P(yes) for (image, question) -- the filter's question about the whole image and
verify's question about each crop -- and a grounder's raw boxes for (image, queries), as the model gave
them, before any threshold, NMS or cap. So a candidate a threshold dropped keeps its scores, and
``label-factory calibrate`` reads them from here.

The key is a sha256 of: the role (vlm / grounder), the model identity (the provider's ``describe()``
without where and how fast it runs -- ``url``, ``max_batch``, ... -- plus, for a grounder built from the
config, ``GrounderProvider.identity()``: a student's weights by content hash), the question or the
queries, and a digest of the pixels the model is handed (mode, size, bytes). Those pixels are the image
after the stage's pixel budget and, for verify, the padded crop: the image content, the budget, the crop
box and the padding are all in the key, because each of them changes the pixels.

The store is SQLite (WAL) at ``MODEL_DIR/answers.db``, one row per answer, shared by every gunicorn
worker and thread and by command-line jobs (each write is one ``BEGIN IMMEDIATE`` transaction; readers
never block). Its size is bounded (``LF_ANSWER_CACHE_MB``, default 1024): past the bound the least
recently used answers are deleted down to 90 %. An answer's "last used" is refreshed on a read only when
it is an hour old, so reads stay reads.

``LF_ANSWER_CACHE=0`` turns it off (the backend); ``--no-cache`` does the same for ``run``, ``predict``
and ``calibrate``. A store that fails (disk full, read-only, corrupt) never fails a prediction: the
failure is logged once and the model is asked. Not here: which stage asks what (pipeline/stages.py)."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from pipeline.detections import Detections
from pipeline.images import pixels_digest
from pipeline.process_cache import ProcessCache
from pipeline.providers.base import YesNo
from pipeline.settings import AnswerCache, Paths
from pipeline.sqlite import Connections, immediate

log = logging.getLogger(__name__)

FILE_NAME = "answers.db"
EVICT_TO = 0.9  # past the bound, delete least recently used answers down to this share of it
TOUCH_AFTER = 3600.0  # seconds: a read refreshes an answer's "last used" only when it is older
ROW_OVERHEAD = 100  # bytes counted per answer on top of its value (key, columns, index entry)
# describe() keys that say where or how fast a model runs, not what it answers
NOT_IDENTITY = frozenset({"url", "max_batch", "concurrency", "timeout", "retries"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key BLOB PRIMARY KEY, role TEXT NOT NULL, value BLOB NOT NULL, size INTEGER NOT NULL, used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_used ON answers (used);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals (id, bytes) VALUES (0, 0);
"""


def enabled(environ=None) -> bool:
    """False when LF_ANSWER_CACHE is 0 / false / no / off."""
    return AnswerCache.read(environ).enabled


class AnswerStore:
    """``key -> bytes`` on disk, bounded to ``max_bytes`` (values + ROW_OVERHEAD per row), least recently
    used out first. Safe for threads and processes; every method swallows SQLite errors (logged once):
    a miss, or an answer not kept."""

    def __init__(self, path, max_bytes: int, touch_after: float = TOUCH_AFTER):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.touch_after = touch_after
        self._conn = Connections(self.path, synchronous="NORMAL")  # a crash loses at most the last answers
        self._warned = False
        with self._guard("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(_SCHEMA)

    # -- plumbing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, what: str):
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            if not self._warned:
                self._warned = True
                log.warning("answer cache %s: %s failed (%s: %s); models are asked instead", self.path, what,
                            type(e).__name__, e)

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn())

    # -- reads ----------------------------------------------------------------------------------
    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The stored values of ``keys`` (missing keys are left out)."""
        found: dict[bytes, bytes] = {}
        stale: list[bytes] = []
        now = time.time()
        with self._guard("read"):
            c = self._conn()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value, used in c.execute(f"SELECT key, value, used FROM answers WHERE key IN ({marks})",
                                                  chunk):
                    found[bytes(key)] = bytes(value)
                    if now - used > self.touch_after:
                        stale.append(bytes(key))
            if stale:
                with self._write() as w:
                    w.executemany("UPDATE answers SET used = ? WHERE key = ?", [(now, k) for k in stale])
        return found

    def get(self, key: bytes) -> Optional[bytes]:
        return self.get_many([key]).get(key)

    # -- writes ---------------------------------------------------------------------------------
    def put_many(self, items: Sequence[tuple[bytes, str, bytes]]) -> None:
        """Store (key, role, value) rows in one transaction, then evict if over the bound."""
        if not items:
            return
        now = time.time()
        with self._guard("write"), self._write() as c:
            delta = 0
            for key, role, value in items:
                old = c.execute("SELECT size FROM answers WHERE key = ?", (key,)).fetchone()
                size = len(value) + ROW_OVERHEAD
                c.execute("INSERT OR REPLACE INTO answers (key, role, value, size, used) VALUES (?, ?, ?, ?, ?)",
                          (key, role, value, size, now))
                delta += size - (old[0] if old else 0)
            c.execute("UPDATE totals SET bytes = bytes + ? WHERE id = 0", (delta,))
            total = c.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0]
            if total > self.max_bytes:
                self._evict(c, total - int(self.max_bytes * EVICT_TO))

    @staticmethod
    def _evict(c: sqlite3.Connection, need: int) -> None:
        """Delete least recently used rows until ``need`` bytes are freed (inside the caller's transaction)."""
        gone, freed = [], 0
        for key, size in c.execute("SELECT key, size FROM answers ORDER BY used, key"):
            if freed >= need:
                break
            gone.append(key)
            freed += size
        c.executemany("DELETE FROM answers WHERE key = ?", [(k,) for k in gone])
        c.execute("UPDATE totals SET bytes = bytes - ? WHERE id = 0", (freed,))
        log.info("answer cache: evicted %d answer(s), %d bytes (least recently used)", len(gone), freed)

    def stats(self) -> dict:
        with self._guard("stats"):
            c = self._conn()
            n = c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            total = c.execute("SELECT bytes FROM totals WHERE id = 0").fetchone()[0]
            return {"path": str(self.path), "answers": n, "bytes": total, "max_bytes": self.max_bytes}
        return {"path": str(self.path), "answers": None, "bytes": None, "max_bytes": self.max_bytes}


_stores: ProcessCache = ProcessCache("answer stores")  # file path -> AnswerStore


def store() -> AnswerStore:
    """The process-wide store of the current MODEL_DIR (re-read each call, so tests can switch it)."""
    path = os.path.abspath(Paths.read().model_dir / FILE_NAME)
    return _stores.get(path, lambda: AnswerStore(path, AnswerCache.read().max_bytes))


# -- keys and values ------------------------------------------------------------------------------
def model_identity(provider, extra: Optional[Callable[[], object]] = None) -> str:
    desc = {k: v for k, v in (provider.describe() or {}).items() if k not in NOT_IDENTITY}
    if extra is not None:
        desc["config_identity"] = extra()
    return json.dumps(desc, sort_keys=True, default=str)


def answer_key(role: str, identity: str, prompt, digest: str) -> bytes:
    blob = json.dumps([role, identity, prompt, digest], default=str)
    return hashlib.sha256(blob.encode()).digest()


def encode_yesno(ans: YesNo) -> bytes:
    return json.dumps({"p_yes": float(ans.p_yes), "method": ans.method, "answer": ans.answer,
                       "raw": ans.raw}, default=str).encode()


def decode_yesno(value: bytes) -> YesNo:
    d = json.loads(value)
    return YesNo(float(d["p_yes"]), d["method"], d.get("answer", ""), d.get("raw") or {})


def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode()


def _unb64(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


def plain_boxes(dets: Detections) -> bool:
    """Boxes with nothing beside xyxy, scores, labels and queries (only those are cached)."""
    for name in ("masks", "identities"):
        values = getattr(dets, name, None)
        if values is not None and any(v is not None for v in values):
            return False
    return not dets.extra


def encode_boxes(dets: Detections) -> bytes:
    names = list(dict.fromkeys([*map(str, dets.labels), *map(str, dets.queries)]))
    index = {s: i for i, s in enumerate(names)}
    return json.dumps({"n": len(dets), "strings": names, "xyxy": _b64(dets.xyxy, "<f4"),
                       "scores": _b64(dets.scores, "<f4"),
                       "labels": [index[str(s)] for s in dets.labels],
                       "queries": [index[str(s)] for s in dets.queries]}).encode()


def decode_boxes(value: bytes) -> Detections:
    d = json.loads(value)
    names = d["strings"]
    return Detections(xyxy=_unb64(d["xyxy"], "<f4").reshape(-1, 4), scores=_unb64(d["scores"], "<f4"),
                      labels=[names[i] for i in d["labels"]], queries=[names[i] for i in d["queries"]])


# -- the providers, wrapped -------------------------------------------------------------------------
class _Cached:
    """Everything not cached goes to the wrapped provider unchanged."""
    role = ""

    def __init__(self, inner, identity_extra: Optional[Callable[[], object]] = None):
        self.inner = inner
        self.identity_extra = identity_extra
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    @classmethod
    def around(cls, provider, identity_extra: Optional[Callable[[], object]] = None):
        """``provider`` behind the answer cache (one already behind it is returned as it is)."""
        return provider if isinstance(provider, _Cached) else cls(provider, identity_extra)

    def __getattr__(self, name):
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _count(self, hits: int, misses: int) -> None:
        with self._count_lock:
            self.hits += hits
            self.misses += misses

    def _keys(self, prompt, digests: Sequence[str]) -> list[bytes]:
        identity = model_identity(self.inner, self.identity_extra)
        return [answer_key(self.role, identity, prompt, d) for d in digests]


class CachedVLM(_Cached):
    """A VLM whose answers come from the store when it has them; only the other images reach the model
    (in one batch, as the stage asked)."""
    role = "vlm"

    def yes_probability(self, image: Image.Image, question: str) -> YesNo:
        return self._answer([image], question, lambda ims: [self.inner.yes_probability(ims[0], question)])[0]

    def yes_probabilities(self, images: Sequence[Image.Image], question: str) -> list[YesNo]:
        return self._answer(list(images), question, lambda ims: self.inner.yes_probabilities(ims, question))

    def _answer(self, images: list, question: str, ask: Callable[[list], list]) -> list[YesNo]:
        if not enabled() or not images:
            return ask(images)
        digests = [pixels_digest(im) for im in images]
        keys = self._keys(question, digests)
        st = store()
        found = st.get_many(keys)
        out = [decode_yesno(found[k]) if k in found else None for k in keys]
        missing = [i for i, a in enumerate(out) if a is None]
        self._count(len(images) - len(missing), len(missing))
        if missing:
            fresh = ask([images[i] for i in missing])
            if len(fresh) != len(missing):  # the stage reports it; nothing is stored
                return fresh
            for i, ans in zip(missing, fresh):
                out[i] = ans
            # stored under the key as of after the call (a provider may have reloaded its weights meanwhile)
            after = self._keys(question, [digests[i] for i in missing])
            st.put_many([(k, self.role, encode_yesno(ans)) for k, ans in zip(after, fresh)])
        return out


class CachedGrounder(_Cached):
    """A grounder whose raw boxes for (image, queries) come from the store when it has them."""
    role = "grounder"

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        queries = list(queries)
        if not enabled():
            return self.inner.boxes(image, queries)
        st = store()
        digest = pixels_digest(image)
        value = st.get(self._keys(queries, [digest])[0])
        if value is not None:
            self._count(1, 0)
            return decode_boxes(value)
        self._count(0, 1)
        dets = self.inner.boxes(image, queries)
        if plain_boxes(dets):
            st.put_many([(self._keys(queries, [digest])[0], self.role, encode_boxes(dets))])
        return dets


def counts(*providers) -> dict:
    """{"hits", "misses"} summed over cached providers (others count nothing)."""
    return {"hits": sum(getattr(p, "hits", 0) for p in providers),
            "misses": sum(getattr(p, "misses", 0) for p in providers)}

