"""The reference index: unit vectors, one entry (label, variant, source) per vector.

A ``IndexSnapshot`` is immutable: every change (add / replace / remove / rebuild) makes a new
snapshot with ``version + 1``.  ``IndexStore`` owns the file: writers serialise on a lock
(threads) plus ``flock`` (processes, e.g. gunicorn workers), write a temp file in the same
directory, fsync it, ``os.replace`` it over the old one and fsync the directory.  Readers take
``store.current()`` — a reference to a complete snapshot — so a predict that runs while fit
writes sees the old index or the new one, never a half-written one; a process killed in the
middle of a write leaves the previous file in place (its temp file is swept by the next writer).

Every vector has a stable integer id, never reused within the snapshot's *lineage* (a random
name given to a snapshot built from scratch; derived snapshots keep it): ``ann`` uses them to
serve later snapshots from an approximate index built on an earlier one.

File format (``.lfidx``, format 2): ``MAGIC`` + u64 header length + JSON header (format, version,
embedder, dim, count, crc32, lineage, next_id, ids_crc32, entries) + float32 vectors (count x dim,
C order) + int64 ids (count).  Format 1 files (no ids) are read with ids 0..count-1.

Search (``ann.searcher``): exact (faiss ``IndexFlatIP`` on unit vectors = cosine) below
``LF_ANN_MIN`` vectors, faiss IVF above.  Per query: the best reference's label, its cosine,
the margin to the best reference of any *other* label (``cosine + 1`` when the index holds no
other label, i.e. the other label's cosine is taken as -1), the top-k neighbours, and
``label = "unknown"`` when cosine < min_cosine or margin < min_margin.  When the candidates hold
a single label the search looks deeper, and past ``DEEPEST`` candidates scores that query with a
full scan, so a margin never comes from a truncated candidate list.
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
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

from pipeline.atomic import save_atomic, tmp_prefix
from pipeline.identify import ann

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
MAGIC = b"LFIDX\x01\n"
FORMAT = 2
READS = (1, 2)
DEEPEST = 4096  # candidates a query may look through for another label before a full scan


class IndexFileError(RuntimeError):
    """An index file that cannot be used (corrupt, wrong format, wrong embedding space)."""


@dataclass
class Neighbor:
    label: str
    variant: Optional[str]
    cosine: float
    source: dict


@dataclass
class Match:
    label: str  # identified label, or "unknown"
    best_label: Optional[str]  # nearest reference's label whatever the thresholds (None: empty index)
    variant: Optional[str]  # nearest reference's variant (e.g. rarity)
    cosine: float  # cosine to the nearest reference (NaN: empty index)
    margin: float  # cosine - best cosine of any other label
    known: bool
    neighbors: list = field(default_factory=list)  # top-k Neighbor, best first

    def to_json(self) -> dict:
        d = asdict(self)
        d["cosine"] = None if np.isnan(self.cosine) else round(float(self.cosine), 6)
        d["margin"] = None if np.isnan(self.margin) else round(float(self.margin), 6)
        for n in d["neighbors"]:
            n["cosine"] = round(float(n["cosine"]), 6)
        return d


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(v, np.float32))
    if v.ndim == 1:
        v = v[None]
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(n, 1e-12), dtype=np.float32)


def make_entry(label: str, variant: Optional[str] = None, **source) -> dict:
    """One vector's metadata. ``source``: task/annotation/region ids (+ project) or file."""
    return {"label": str(label), "variant": variant or None,
            "source": {k: v for k, v in source.items() if v is not None}}


class IndexSnapshot:
    """An immutable set of reference vectors with their entries, stable ids and a version number."""

    def __init__(self, vectors: Optional[np.ndarray] = None, entries: Sequence[dict] = (), version: int = 0,
                 embedder: str = "", dim: Optional[int] = None, created: Optional[float] = None,
                 normalized: bool = False, info: Optional[dict] = None, ids: Optional[np.ndarray] = None,
                 lineage: Optional[str] = None, next_id: Optional[int] = None):
        v = np.zeros((0, dim or 0), np.float32) if vectors is None else np.asarray(vectors, np.float32)
        if v.ndim == 1:
            v = v.reshape(-1, dim or (v.size or 0)) if v.size else np.zeros((0, dim or 0), np.float32)
        if len(v) and not normalized:
            v = _unit(v)
        self.vectors = np.ascontiguousarray(v)
        self.vectors.setflags(write=False)
        self.entries = list(entries)
        if len(self.entries) != len(self.vectors):
            raise ValueError(f"{len(self.vectors)} vectors but {len(self.entries)} entries")
        if ids is None:
            ids = np.arange(len(self.vectors), dtype=np.int64)
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) != len(self.vectors) or (len(ids) > 1 and not (np.diff(ids) > 0).all()) \
                or (len(ids) and ids[0] < 0):
            raise ValueError("ids must be one non-negative, strictly increasing id per vector")
        ids.setflags(write=False)
        self.ids = ids
        self.next_id = int(next_id if next_id is not None else (ids[-1] + 1 if len(ids) else 0))
        if len(ids) and self.next_id <= ids[-1]:
            raise ValueError(f"next_id {self.next_id} <= largest id {ids[-1]}")
        self.lineage = lineage or uuid.uuid4().hex
        self.dim = int(self.vectors.shape[1]) if self.vectors.shape[1] else dim
        self.version = int(version)
        self.embedder = embedder
        self.info = dict(info or {})  # free-form, persisted (e.g. the embedder's model/pretrained spec)
        self.created = created if created is not None else time.time()
        self.labels = np.array([e["label"] for e in self.entries], dtype=object)
        self.path: Optional[Path] = None  # the file this snapshot was loaded from / saved to
        self._exact = None
        self._ann = None  # ann.ApproximateSearch for this snapshot, once one was made
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def label_set(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    # -- derived snapshots (copy on write) ---------------------------------------------
    def _derive(self, vectors, entries, ids, next_id, embedder: Optional[str] = None) -> "IndexSnapshot":
        return IndexSnapshot(vectors, entries, self.version, embedder or self.embedder, self.dim, normalized=True,
                             info=self.info, ids=ids, lineage=self.lineage, next_id=next_id)

    def _check(self, vectors: np.ndarray, embedder: Optional[str]) -> np.ndarray:
        vectors = _unit(vectors) if len(vectors) else np.zeros((0, self.dim or 0), np.float32)
        if len(self) and embedder and self.embedder and embedder != self.embedder:
            raise IndexFileError(f"index was built with {self.embedder}, these vectors come from {embedder}: "
                                 "rebuild the index (START_TRAINING / identify index)")
        if len(self) and self.dim and vectors.shape[1] != self.dim:
            raise IndexFileError(f"vectors of dim {vectors.shape[1]} do not fit an index of dim {self.dim}: "
                                 "rebuild the index (START_TRAINING / identify index)")
        return vectors

    def added(self, vectors: np.ndarray, entries: Sequence[dict], embedder: Optional[str] = None) -> "IndexSnapshot":
        vectors = self._check(vectors, embedder)
        if not len(vectors):
            return self._derive(self.vectors, self.entries, self.ids, self.next_id, embedder)
        base = self.vectors if len(self) else np.zeros((0, vectors.shape[1]), np.float32)
        new_ids = np.arange(self.next_id, self.next_id + len(vectors), dtype=np.int64)
        return self._derive(np.concatenate([base, vectors]), self.entries + list(entries),
                            np.concatenate([self.ids, new_ids]), self.next_id + len(vectors), embedder)

    def removed(self, pred: Callable[[dict], bool]) -> "IndexSnapshot":
        keep = np.array([not pred(e) for e in self.entries], bool)
        if keep.all():
            return self._derive(self.vectors, self.entries, self.ids, self.next_id)
        return self._derive(self.vectors[keep], [e for e, k in zip(self.entries, keep) if k], self.ids[keep],
                            self.next_id)

    def without_annotations(self, annotation_ids: Iterable) -> "IndexSnapshot":
        ids = {str(a) for a in annotation_ids}
        return self.removed(lambda e: str(e["source"].get("annotation")) in ids)

    def with_annotation(self, annotation_id, vectors: np.ndarray, entries: Sequence[dict],
                        embedder: Optional[str] = None) -> "IndexSnapshot":
        """Replace every vector of ``annotation_id`` with these (regions removed in an update go away)."""
        return self.without_annotations([annotation_id]).added(vectors, entries, embedder)

    def annotation_ids(self) -> set:
        return {e["source"]["annotation"] for e in self.entries if "annotation" in e["source"]}

    # -- search -------------------------------------------------------------------------
    def exact_search(self):
        """The exact searcher (faiss IndexFlatIP over a copy of the vectors), built once per snapshot."""
        if self._exact is None:
            with self._lock:
                if self._exact is None:
                    self._exact = ann.ExactSearch(self.vectors)
        return self._exact

    def searcher(self, settings: Optional["ann.AnnSettings"] = None):
        """What answers this snapshot's searches: ``ann.ExactSearch`` or ``ann.ApproximateSearch``."""
        return ann.searcher(self, settings)

    def knn(self, queries: np.ndarray, k: int, settings: Optional["ann.AnnSettings"] = None):
        """Inner-product top-k: (cosines, row indices), each (Q, k); -1 rows past the end."""
        return self.searcher(settings).knn(_unit(queries), int(min(k, len(self))))

    def search(self, queries: np.ndarray, top_k: int = 5, min_cosine: float = 0.8, min_margin: float = 0.05,
               embedder: Optional[str] = None, settings: Optional["ann.AnnSettings"] = None) -> list[Match]:
        """One ``Match`` per query. ``embedder``: the id of the embedder that made the queries;
        refused (``IndexFileError``) when it is not the one that built the index. ``settings``:
        exact/approximate search settings (default: from the environment, see ``ann``)."""
        queries = _unit(queries)
        if not len(self):
            return [Match(UNKNOWN, None, None, float("nan"), float("nan"), False, []) for _ in range(len(queries))]
        if embedder and self.embedder and embedder != self.embedder:
            raise IndexFileError(f"index was built with {self.embedder}, the queries come from {embedder}: "
                                 "search with the same model/projection or rebuild the index")
        if queries.shape[1] != self.dim:
            raise IndexFileError(f"query dim {queries.shape[1]} != index dim {self.dim}")
        searcher = self.searcher(settings)
        n = len(self)
        k = min(n, max(top_k, 32))
        out: list[Optional[Match]] = [None] * len(queries)
        todo = np.arange(len(queries))
        while len(todo):
            complete = k >= n and searcher.kind == "exact"  # every vector was a candidate
            D, I = searcher.knn(queries[todo], k)
            retry = []
            for row, qi in enumerate(todo):
                m = self._match(D[row], I[row], top_k, min_cosine, min_margin, -1.0 if complete else None)
                if m is None:
                    retry.append(qi)
                else:
                    out[qi] = m
            todo = np.array(retry, int)
            if len(todo) and (complete or k >= min(n, DEEPEST)):
                for qi in todo:  # rare: the candidates hold one label only; a full scan finds the other
                    out[qi] = self._match_exhaustive(queries[qi], top_k, min_cosine, min_margin)
                break
            k = min(n, k * 8)
        return out

    def _match_exhaustive(self, q: np.ndarray, top_k, min_cosine, min_margin) -> Match:
        cos = self.vectors @ q
        k = min(len(cos), max(top_k, 1))
        top = np.argpartition(-cos, k - 1)[:k]
        top = top[np.argsort(-cos[top], kind="stable")]
        others = self.labels != self.labels[top[0]]
        other = float(cos[others].max()) if others.any() else -1.0
        return self._match(cos[top], top, top_k, min_cosine, min_margin, other)

    def _match(self, D, I, top_k, min_cosine, min_margin, other: Optional[float]) -> Optional[Match]:
        """``other``: the best other-label cosine when the candidates hold none (None: look deeper)."""
        valid = I >= 0
        D, I = D[valid], I[valid]
        if not len(I):
            return None
        best = int(I[0])
        label = self.labels[best]
        differ = np.flatnonzero(self.labels[I] != label)
        if len(differ):
            margin = float(D[0] - D[differ[0]])
        elif other is not None:
            margin = float(D[0] - other)  # no other label in the index: its cosine counts as -1
        else:
            return None
        cos = float(D[0])
        known = cos >= min_cosine and margin >= min_margin
        neighbors = [Neighbor(self.labels[j], self.entries[j]["variant"], float(d), self.entries[j]["source"])
                     for d, j in zip(D[:top_k], I[:top_k])]
        return Match(label if known else UNKNOWN, label, self.entries[best]["variant"], cos, margin, known, neighbors)

    # -- persistence ----------------------------------------------------------------------
    def header(self) -> dict:
        return {"format": FORMAT, "version": self.version, "embedder": self.embedder, "dim": self.dim,
                "count": len(self), "created": self.created, "info": self.info,
                "crc32": zlib.crc32(memoryview(self.vectors).cast("B")) if len(self) else 0,
                "lineage": self.lineage, "next_id": self.next_id,
                "ids_crc32": zlib.crc32(memoryview(self.ids).cast("B")) if len(self) else 0,
                "entries": self.entries}

    def write(self, f) -> None:
        head = json.dumps(self.header(), separators=(",", ":")).encode()
        f.write(MAGIC + struct.pack("<Q", len(head)) + head)
        if len(self):
            f.write(memoryview(self.vectors).cast("B"))
            f.write(memoryview(np.ascontiguousarray(self.ids, "<i8")).cast("B"))

    @classmethod
    def read(cls, f, name: str = "<index>") -> "IndexSnapshot":
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise IndexFileError(f"{name}: not a label-factory identify index (bad magic)")
        (hlen,) = struct.unpack("<Q", f.read(8))
        try:
            head = json.loads(f.read(hlen))
        except ValueError as e:
            raise IndexFileError(f"{name}: corrupt header: {e}") from None
        fmt = head.get("format")
        if fmt not in READS:
            raise IndexFileError(f"{name}: index format {fmt} (this code reads {', '.join(map(str, READS))})")
        n, d = int(head["count"]), int(head["dim"] or 0)
        vec = np.frombuffer(f.read(n * d * 4), np.float32) if n else np.zeros(0, np.float32)
        if vec.size != n * d:
            raise IndexFileError(f"{name}: truncated: {vec.size} of {n * d} floats")
        if n and zlib.crc32(vec.data) != head["crc32"]:
            raise IndexFileError(f"{name}: vector checksum mismatch")
        if fmt == 1:
            ids, lineage, next_id = None, f"format1-{head['crc32']:08x}-{n}-{head['version']}", None
        else:
            ids = np.frombuffer(f.read(n * 8), "<i8") if n else np.zeros(0, np.int64)
            if ids.size != n:
                raise IndexFileError(f"{name}: truncated: {ids.size} of {n} ids")
            if n and zlib.crc32(ids.data) != head["ids_crc32"]:
                raise IndexFileError(f"{name}: id checksum mismatch")
            lineage, next_id = head["lineage"], head["next_id"]
        try:
            return cls(vec.reshape(n, d) if n else np.zeros((0, d), np.float32), head["entries"],
                       int(head["version"]), head.get("embedder", ""), d or None, head.get("created", 0.0),
                       normalized=True, info=head.get("info") or {}, ids=ids, lineage=lineage, next_id=next_id)
        except ValueError as e:
            raise IndexFileError(f"{name}: {e}") from None

    def save(self, path: Union[str, Path]) -> None:
        """Atomic: temp file in the same directory, fsync, os.replace, fsync the directory."""
        save_atomic(path, self.write)
        self.path = Path(path)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "IndexSnapshot":
        with open(path, "rb") as f:
            snap = cls.read(f, str(path))
        snap.path = Path(path)
        return snap


class IndexStore:
    """One index file, shared by the threads (and processes) that search it and update it."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._snap: Optional[IndexSnapshot] = None
        self._stamp = None

    def __repr__(self) -> str:
        return f"IndexStore({str(self.path)!r})"

    # -- reading --------------------------------------------------------------------------
    def current(self) -> IndexSnapshot:
        """The newest complete snapshot (reloaded when another process replaced the file)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        snap = self._snap
        if snap is not None and stamp == self._stamp:
            return snap
        with self._lock:
            if self._snap is not None and stamp == self._stamp:
                return self._snap
            return self._reload()

    def _reload(self) -> IndexSnapshot:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                snap = IndexSnapshot.read(f, str(self.path))
            snap.path = self.path
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            snap, stamp = IndexSnapshot(), None
        self._snap, self._stamp = snap, stamp
        return snap

    @property
    def version(self) -> int:
        return self.current().version

    # -- writing --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write_lock(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.parent / f".{self.path.name}.lock", "a+b") as lf:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX)
            try:
                self._sweep_tmp()
                yield
            finally:
                fcntl.flock(lf.fileno(), fcntl.LOCK_UN)

    def _sweep_tmp(self) -> None:
        """Temp files left by a writer that died (we hold the lock, so no live writer owns one)."""
        prefix = tmp_prefix(self.path)
        for p in self.path.parent.glob(prefix + "*"):
            log.warning("removing %s left by an interrupted index write", p)
            with contextlib.suppress(OSError):
                p.unlink()

    def update(self, change: Callable[[IndexSnapshot], IndexSnapshot]) -> IndexSnapshot:
        """Apply ``change`` to the newest snapshot on disk and persist the result as version + 1."""
        with self._write_lock():
            old = self.current()  # re-read only if another process replaced the file
            new = change(old)
            new.version = old.version + 1
            new.created = time.time()
            new.save(self.path)
            st = os.stat(self.path)
            self._snap, self._stamp = new, (st.st_ino, st.st_mtime_ns, st.st_size)
            return new

    def replace_all(self, snap: IndexSnapshot) -> IndexSnapshot:
        """Swap in a whole new index (a rebuild); its version is the old one + 1."""
        return self.update(lambda old: snap)

    def add(self, vectors, entries, embedder: Optional[str] = None) -> IndexSnapshot:
        return self.update(lambda old: old.added(vectors, entries, embedder))

    def set_annotation(self, annotation_id, vectors, entries, embedder: Optional[str] = None) -> IndexSnapshot:
        return self.update(lambda old: old.with_annotation(annotation_id, vectors, entries, embedder))

    def remove_annotations(self, annotation_ids) -> IndexSnapshot:
        return self.update(lambda old: old.without_annotations(annotation_ids))


def project_index_path(model_dir: Union[str, Path], project_id) -> Path:
    """Where a Label Studio project's index lives under MODEL_DIR."""
    return Path(model_dir) / "identify" / f"project-{project_id}" / "index.lfidx"
