"""How a snapshot of the reference index is searched: exact below ``LF_ANN_MIN`` vectors, approximate above.

Exact search (faiss ``IndexFlatIP``) costs ~0.07 ms per 1,000 vectors per query here: 74 ms at 1 M.
Above ``LF_ANN_MIN`` (default 50,000, where exact search is still ~4 ms) a snapshot is searched
with faiss **IVF-SQ8** (inner product, about sqrt(n) lists, ``LF_ANN_NPROBE`` of them probed, vectors
stored as 8-bit codes):

* **Why IVF, not HNSW**: with one faiss thread, IVF builds 1 M x 512 vectors in under a minute
  (k-means on a 64k sample + one BLAS assignment pass); faiss HNSW took 20 s for 50 k here (many
  minutes at 1 M), and cannot remove vectors.
* **Why 8-bit codes**: a query's cost is reading its lists from memory.  At 1 M, 32 lists of
  float32 vectors are ~64 MB per query (~8 ms on this machine under load, and past ~20 lists the
  lists stop fitting the cache share); 8-bit codes read a quarter of that (~1.5 ms) and the base
  takes 0.5 GB instead of 2 GB.  The codes only choose the candidates: every candidate's cosine is
  recomputed from the snapshot's float32 vectors, so cosines, margins and the order of the top-k
  are exact; only *which* vectors a query looks at is approximate.
* **The .lfidx file stays the source of truth** (atomic versioned writes, unchanged).  Every
  vector has a stable id, never reused within the index's lineage (see ``IndexSnapshot``), so an
  IVF index built from one snapshot (the *base*) serves every later snapshot of the same lineage:
  base vectors removed since are masked out with a faiss ``IDSelectorBitmap`` of the live ids, and
  the rows the base does not hold (added since) are searched exactly and merged.  An annotation
  webhook therefore costs what it cost before (rewrite the .lfidx file) and no IVF work.  The base
  is rebuilt, in the background, once the vectors added + removed since it exceed
  ``LF_ANN_MAX_CHANGES`` (default 20,000: an exact tail of that size costs ~1.5 ms per query).
* **Built lazily, cached on disk**: the first search of a big snapshot starts a build in a
  background thread and is answered exactly until the base is ready (``LF_ANN_BUILD=sync`` builds
  in the caller instead: tests, benchmarks, batch jobs).  The base is written atomically next to
  the index (``.<name>.ivf``: lineage, version, its ids, the faiss index), so other worker
  processes and restarts load it instead of building; one process builds at a time (``flock``).
  A base of another lineage (the index was rebuilt from scratch) is ignored and replaced.

Settings (environment, read at each use; declared in pipeline/settings.py, ``Identify``): ``LF_ANN_MIN``,
``LF_ANN_NPROBE`` (default 32), ``LF_ANN_NLIST`` (0: about sqrt(n), a power of two), ``LF_ANN_BUILD``
(``background`` | ``sync``), ``LF_ANN_MAX_CHANGES``.  Faiss threads: ``LF_FAISS_THREADS``.

This module decides *which* vectors are candidates; labels, margins and thresholds stay in
``index.IndexSnapshot.search``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pipeline.atomic import save_atomic, tmp_prefix
from pipeline.process_cache import ProcessCache
from pipeline.settings import Identify

log = logging.getLogger(__name__)

MAGIC = b"LFIVF\x01\n"
MAX_IN_MEMORY = 8  # bases kept per process for snapshots that have no file (tests, benchmarks)


@dataclass(frozen=True)
class AnnSettings:
    min_size: int = 50_000
    nprobe: int = 32
    nlist: int = 0
    build: str = "background"
    max_changes: int = 20_000

    @classmethod
    def from_env(cls, environ=None) -> "AnnSettings":
        """The LF_ANN_* settings in ``environ`` (default: the environment now)."""
        s = Identify.read(environ)
        return cls(s.ann_min, s.ann_nprobe, s.ann_nlist, s.ann_build, s.ann_max_changes)


def auto_nlist(n: int) -> int:
    """About sqrt(n) lists, a power of two, each with >= 39 training points (faiss's minimum)."""
    nlist = 2 ** int(round(np.log2(max(1.0, np.sqrt(n)))))
    return int(max(1, min(nlist, 4096, n // 39)))


def faiss_module():
    """faiss, with its OpenMP threads set once per process from LF_FAISS_THREADS (default 1).

    One thread is fastest for what predict does (a few queries per request, requests served
    concurrently by threads/workers): multi-threaded OpenMP on a single query mostly spins,
    and under CPU contention it is 10-20x slower (README, Performance)."""
    def load():
        import faiss
        faiss.omp_set_num_threads(Identify.read().faiss_threads)
        return faiss
    return _modules.get("faiss", load)


_modules: ProcessCache = ProcessCache("faiss")


# -- searchers: knn(queries, k) -> (cosines, rows), each (Q, k), -1 rows past the end --------------
class ExactSearch:
    """faiss IndexFlatIP over the snapshot's vectors (a copy: faiss owns its memory)."""
    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        faiss = faiss_module()
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            self.index.add(vectors)

    def knn(self, queries: np.ndarray, k: int):
        return self.index.search(queries, int(min(k, self.index.ntotal)))


class AnnBase:
    """An immutable IVF-SQ8 index over one snapshot's vectors; faiss ids = the snapshot's stable ids."""

    def __init__(self, index, ids: np.ndarray, lineage: str, version: int):
        self.index, self.ids, self.lineage, self.version = index, ids, lineage, int(version)
        self._member: Optional[np.ndarray] = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def member(self) -> np.ndarray:
        """Boolean table: ``member()[id]`` is whether the base holds that id."""
        if self._member is None:
            m = np.zeros(int(self.ids[-1]) + 1 if len(self.ids) else 0, bool)
            m[self.ids] = True
            self._member = m
        return self._member

    @classmethod
    def build(cls, snap, nlist: int = 0, seed: int = 0) -> "AnnBase":
        faiss = faiss_module()
        n, d = snap.vectors.shape
        nlist = min(nlist or auto_nlist(n), max(1, n))
        ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                            faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter, ivf.cp.max_points_per_centroid, ivf.cp.seed = 10, 64, seed
        sample = np.sort(np.random.default_rng(seed).choice(n, min(n, nlist * 64), replace=False))
        ivf.train(np.ascontiguousarray(snap.vectors[sample]))
        ivf.add_with_ids(snap.vectors, snap.ids)
        return cls(ivf, snap.ids, snap.lineage, snap.version)

    def write(self, f) -> None:
        faiss = faiss_module()
        head = json.dumps({"lineage": self.lineage, "version": self.version, "count": len(self.ids)}).encode()
        f.write(MAGIC + struct.pack("<Q", len(head)) + head)
        f.write(memoryview(np.ascontiguousarray(self.ids, "<i8")).cast("B"))
        faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))

    @classmethod
    def load(cls, path: Path, lineage: str) -> Optional["AnnBase"]:
        """The cached base at ``path`` if it belongs to ``lineage`` (None otherwise)."""
        faiss = faiss_module()
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError("not an IVF cache file")
            (hlen,) = struct.unpack("<Q", f.read(8))
            head = json.loads(f.read(hlen))
            if head["lineage"] != lineage:
                return None
            n = int(head["count"])
            ids = np.frombuffer(f.read(8 * n), "<i8")
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        if len(ids) != n or index.ntotal != n:
            raise ValueError(f"{path}: truncated ({len(ids)} ids, {index.ntotal} vectors, header says {n})")
        return cls(index, ids.astype(np.int64), head["lineage"], head["version"])


class ApproximateSearch:
    """One snapshot searched through a base of its lineage: IVF over the base's vectors that are
    still live (an id selector masks the removed ones) + exact search over the rows the base lacks."""
    kind = "ivf"

    def __init__(self, snap, base: AnnBase, nprobe: int):
        faiss = faiss_module()
        self.base, self.ids, self.vectors = base, snap.ids, snap.vectors
        tail = int(np.searchsorted(snap.ids, base.ids[-1], side="right")) if len(base.ids) else 0
        if tail == len(base.ids) and np.array_equal(snap.ids[:tail], base.ids):
            in_base = np.zeros(len(snap.ids), bool)  # the usual case: only additions since the base
            in_base[:tail] = True
        else:
            member = base.member()
            in_base = np.zeros(len(snap.ids), bool)
            low = snap.ids < len(member)
            in_base[low] = member[snap.ids[low]]
        self.extra = np.flatnonzero(~in_base)  # rows the base does not hold: searched exactly
        self.extra_vectors = np.ascontiguousarray(snap.vectors[self.extra]) if len(self.extra) else None
        self.removed = base.ntotal - int(in_base.sum())  # base vectors no longer in the snapshot
        self.params = faiss.SearchParametersIVF()
        self.params.nprobe = int(min(nprobe, base.index.nlist))
        if self.removed:
            live = np.zeros(len(base.member()), bool)
            live[snap.ids[in_base]] = True
            self._bitmap = np.packbits(live, bitorder="little")  # kept alive: faiss holds a raw pointer
            self._sel = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(self._bitmap))
            self.params.sel = self._sel

    @property
    def changes(self) -> int:
        """Vectors added or removed since the base was built."""
        return len(self.extra) + self.removed

    def knn(self, queries: np.ndarray, k: int, block: int = 256):
        k = int(min(k, len(self.ids)))
        D, rows = [], []
        for s in range(0, len(queries), block):
            d, r = self._knn(queries[s:s + block], k)
            D.append(d)
            rows.append(r)
        return np.concatenate(D), np.concatenate(rows)

    def _knn(self, queries: np.ndarray, k: int):
        _, ids = self.base.index.search(queries, k, params=self.params)
        rows = np.where(ids >= 0, np.searchsorted(self.ids, np.maximum(ids, 0)), -1)
        # the 8-bit codes only pick the candidates: their cosines come from the float32 vectors
        D = np.einsum("qkd,qd->qk", self.vectors[np.maximum(rows, 0)], queries)
        D = np.where(rows >= 0, D, -np.inf)
        if self.extra_vectors is not None:
            cos = queries @ self.extra_vectors.T  # (Q, extra)
            kk = min(k, cos.shape[1])
            top = np.argpartition(-cos, kk - 1, axis=1)[:, :kk]
            D = np.concatenate([D, np.take_along_axis(cos, top, 1)], axis=1)
            rows = np.concatenate([rows, self.extra[top]], axis=1)
        order = np.argsort(-D, axis=1, kind="stable")[:, :k]
        D, rows = np.take_along_axis(D, order, 1), np.take_along_axis(rows, order, 1)
        return D.astype(np.float32), np.where(np.isfinite(D), rows, -1)


# -- which base serves a snapshot -----------------------------------------------------------------
RETRY_S = 2.0  # a failed attempt (or one that found another process building) is retried after this


def cache_path(index_path: Path) -> Path:
    return index_path.parent / f".{index_path.name}.ivf"


class _Registry:
    """The newest base per index file (per lineage for snapshots without a file), and the builds running."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bases: OrderedDict[str, AnnBase] = OrderedDict()
        self.seen: dict[str, tuple] = {}  # key -> stat of the cache file this process last read
        self.busy: set[str] = set()
        self.failed: dict[str, tuple] = {}  # key -> (lineage, time.monotonic()) of the last attempt that failed

    @staticmethod
    def key(snap) -> str:
        return f"file:{snap.path}" if snap.path is not None else f"mem:{snap.lineage}"

    def get(self, snap) -> Optional[AnnBase]:
        base = self.bases.get(self.key(snap))
        return base if base is not None and base.lineage == snap.lineage else None

    def put(self, key: str, base: AnnBase) -> None:
        with self.lock:
            old = self.bases.get(key)
            if old is None or old.lineage != base.lineage or old.version <= base.version:
                self.bases[key] = base
                self.bases.move_to_end(key)
            for k in [k for k in self.bases if k.startswith("mem:")][:-MAX_IN_MEMORY]:
                del self.bases[k]

    def _stat(self, snap) -> Optional[tuple]:
        try:
            st = os.stat(cache_path(snap.path))
        except (FileNotFoundError, TypeError):
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def cache_changed(self, snap) -> bool:
        """Whether another process wrote a new base for this snapshot's file since this one last read it."""
        stamp = self._stat(snap) if snap.path is not None else None
        return stamp is not None and self.seen.get(self.key(snap)) != stamp

    def ensure(self, snap, settings: AnnSettings, rebuild: bool) -> None:
        """Load the cached base or build one (in the background unless ``settings.build == 'sync'``)."""
        key = self.key(snap)
        with self.lock:
            last = self.failed.get(key)
            if key in self.busy or (last and last[0] == snap.lineage and time.monotonic() - last[1] < RETRY_S
                                    and not self.cache_changed(snap)):
                return
            self.busy.add(key)
        if settings.build == "sync":
            self._ensure(key, snap, settings, rebuild)
        else:
            threading.Thread(target=self._ensure, args=(key, snap, settings, rebuild), daemon=True,
                             name=f"ivf-build-{snap.lineage[:8]}").start()

    def _ensure(self, key, snap, settings, rebuild) -> None:
        done = False
        try:
            done = self._load_or_build(key, snap, settings, rebuild)
        except Exception:  # noqa: BLE001 - searches stay exact; a later search tries again
            log.exception("building the approximate index of %s failed", snap.path or "an in-memory index")
        finally:
            with self.lock:
                self.busy.discard(key)
                if done:
                    self.failed.pop(key, None)
                else:
                    self.failed[key] = (snap.lineage, time.monotonic())

    def _load_or_build(self, key, snap, settings, rebuild) -> bool:
        if snap.path is None:
            self.put(key, AnnBase.build(snap, settings.nlist))
            return True
        if not rebuild and self._load(key, snap):
            return True
        with _build_lock(snap.path) as got:
            if not got:  # another process is building; its file is picked up when it appears
                return False
            if not rebuild and self._load(key, snap):
                return True
            t0 = time.perf_counter()
            base = AnnBase.build(snap, settings.nlist)
            save_atomic(cache_path(snap.path), base.write)
            self.seen[key] = self._stat(snap)
            self.put(key, base)
            log.info("built the IVF index of %s v%d: %d vectors, %d lists, %.1f s", snap.path, snap.version,
                     base.ntotal, base.index.nlist, time.perf_counter() - t0)
            return True

    def clear(self) -> None:
        """Forget every base this process holds (tests; a process that wants the memory back)."""
        with self.lock:
            self.bases.clear()
            self.seen.clear()
            self.failed.clear()

    def _load(self, key, snap) -> bool:
        path = cache_path(snap.path)
        stamp = self._stat(snap)
        if stamp is None:
            return False
        try:
            base = AnnBase.load(path, snap.lineage)
        except Exception as e:  # noqa: BLE001 - a broken cache is rebuilt
            log.warning("ignoring the IVF cache %s: %s", path, e)
            return False
        self.seen[key] = stamp
        if base is None:
            return False
        self.put(key, base)
        return True


@contextlib.contextmanager
def _build_lock(index_path: Path):
    """Non-blocking: yields False when another process holds it. Sweeps temp files of dead builders."""
    target = cache_path(index_path)
    with open(index_path.parent / f"{target.name}.lock", "a+b") as lf:
        try:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            for p in target.parent.glob(tmp_prefix(target) + "*"):
                with contextlib.suppress(OSError):
                    p.unlink()
            yield True
        finally:
            fcntl.flock(lf.fileno(), fcntl.LOCK_UN)


registry = _Registry()


def searcher(snap, settings: Optional[AnnSettings] = None):
    """The searcher for ``snap``: ``ApproximateSearch`` when it is big enough and a base of its lineage
    is ready, else ``ExactSearch`` (starting the base's load or build when it is missing or stale)."""
    settings = settings or AnnSettings.from_env()
    if len(snap) < max(1, settings.min_size):
        return snap.exact_search()
    base = registry.get(snap)
    if base is None or registry.cache_changed(snap):
        registry.ensure(snap, settings, rebuild=False)
        base = registry.get(snap)
    if base is None:
        return snap.exact_search()
    nprobe = min(settings.nprobe, base.index.nlist)
    s = snap._ann
    if s is None or s.base is not base or s.params.nprobe != nprobe:
        s = ApproximateSearch(snap, base, nprobe)
        if s.changes > settings.max_changes:
            registry.ensure(snap, settings, rebuild=True)  # answers come from the old base meanwhile
            newer = registry.get(snap)
            if newer is not None and newer is not base:
                s = ApproximateSearch(snap, newer, nprobe)
        snap._ann = s
        snap._exact = None  # the exact copy used while the base was missing is not needed any more
    return s
