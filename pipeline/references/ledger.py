"""What an index says it has applied: each annotation's version, and the annotations that were deleted.

Both live in the index's ``info`` and are written in the same atomic update as the vectors
(``pipeline.identify.index.IndexStore.update``), so they survive restarts exactly as the vectors do.

* ``info["applied"]``: annotation id -> ``[updated_at, index version, digest, created_at]`` of the
  version the vectors come from (cancelled annotations and ones without regions too, with no
  vectors). Records written before digests existed hold the first two only.
* ``info["deleted"]``: tombstones ``[annotation id, index version, created_at]``, oldest first, at
  most ``MAX_TOMBSTONES``.

What Label Studio 1.23 gives to order events: an annotation webhook carries the whole annotation,
so ``updated_at`` (bumped by every save) orders its versions and ``created_at`` (shared by them all)
tells which annotation it is; ANNOTATIONS_DELETED carries ids only. Label Studio never reuses an
annotation id (AUTOINCREMENT / sequences), so nothing about a deleted annotation can be newer than
its deletion: a tombstone stands against every later upsert of that id — a late or repeated webhook,
a catch-up listing read before the delete — except one for an annotation created after the deleted
one (the id given again, e.g. by a Label Studio database started afresh), which lifts it.

An upsert is left out (``why_skip``) when it is about a deleted annotation, when the index holds a
newer ``updated_at`` of it, or when it is identical to what was applied (same ``updated_at``, same
digest of what the vectors are made from): no write, so no new index version and no new
``model_version``. A repeated delete is likewise no write (``to_delete``)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Optional

from pipeline.identify.index import IndexSnapshot

APPLIED = "applied"
TOMBSTONES = "deleted"
MAX_TOMBSTONES = 10_000


def epoch(value) -> Optional[float]:
    """A Label Studio timestamp (ISO 8601 string or datetime) as epoch seconds (None when absent or unreadable)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


def updated_at(annotation: dict) -> Optional[float]:
    """An annotation's ``updated_at`` as epoch seconds (None when absent or unreadable)."""
    return epoch(annotation.get("updated_at"))


@dataclass(frozen=True)
class Version:
    """One annotation as an event (or a listing) shows it."""
    updated: Optional[float]  # updated_at: which version of the annotation
    created: Optional[float]  # created_at: which annotation (the same for all its versions)
    digest: str  # what its vectors are made from: the result and whether it was cancelled

    @classmethod
    def of(cls, annotation: dict) -> "Version":
        body = {"result": annotation.get("result") or [], "was_cancelled": bool(annotation.get("was_cancelled"))}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return cls(updated_at(annotation), epoch(annotation.get("created_at")),
                   hashlib.sha256(text.encode()).hexdigest()[:24])

    def record(self, index_version: int) -> list:
        return [self.updated, index_version, self.digest, self.created]


@dataclass(frozen=True)
class Tombstone:
    version: int  # the index version that applied the delete
    created: Optional[float]  # the deleted annotation's created_at, when the index had applied it

    def stands_against(self, v: Version) -> bool:
        """True unless ``v`` is of an annotation created after the deleted one (the id given again)."""
        return self.created is None or v.created is None or v.created <= self.created


def applied(snap: IndexSnapshot) -> dict:
    """annotation id (str) -> its applied record (see the module doc)."""
    return snap.info.get(APPLIED) or {}


def tombstones(snap: IndexSnapshot) -> dict[str, Tombstone]:
    out = {}
    for t in snap.info.get(TOMBSTONES) or []:
        out[str(t[0])] = Tombstone(int(t[1]), t[2] if len(t) > 2 else None)
    return out


def why_skip(snap: IndexSnapshot, annotation_id, v: Version) -> str:
    """Why applying this version of the annotation would be wrong or useless now ('' when it is not)."""
    tomb = tombstones(snap).get(str(annotation_id))
    if tomb is not None and tomb.stands_against(v):
        return f"the annotation was deleted (index version {tomb.version}): a late or repeated event"
    rec = applied(snap).get(str(annotation_id))
    if not rec:
        return ""
    if rec[0] is not None and v.updated is not None and v.updated < rec[0]:
        return "a newer version of the annotation is already in the index"
    if rec[0] == v.updated and len(rec) > 2 and rec[2] == v.digest:
        return "this version of the annotation is already in the index"
    return ""


def with_applied(snap: IndexSnapshot, info: dict, annotation_id, v: Version, index_version: int) -> dict:
    """``info`` recording ``v`` as applied at ``index_version`` (and lifting a tombstone ``v`` is newer than)."""
    aid = str(annotation_id)
    out = {**info, APPLIED: {**applied(snap), aid: v.record(index_version)}}
    if aid in tombstones(snap):
        out[TOMBSTONES] = [t for t in snap.info.get(TOMBSTONES) or [] if str(t[0]) != aid]
    return out


def to_delete(snap: IndexSnapshot, annotation_ids: Iterable) -> list[str]:
    """The ids of a delete that change something: not yet tombstoned, or with vectors or a record still."""
    tombs, recs = tombstones(snap), applied(snap)
    present = {str(a) for a in snap.annotation_ids()}
    ids = dict.fromkeys(str(a) for a in annotation_ids)
    return [a for a in ids if a not in tombs or a in recs or a in present]


def with_deleted(snap: IndexSnapshot, info: dict, annotation_ids: list[str], index_version: int) -> dict:
    """``info`` with these annotations' records gone and a tombstone each (oldest dropped past the cap)."""
    recs = applied(snap)
    gone = set(annotation_ids)
    kept = [t for t in snap.info.get(TOMBSTONES) or [] if str(t[0]) not in gone]
    new = [[a, index_version, recs[a][3] if len(recs.get(a) or ()) > 3 else None] for a in annotation_ids]
    return {**info, TOMBSTONES: (kept + new)[-MAX_TOMBSTONES:],
            APPLIED: {a: r for a, r in recs.items() if a not in gone}}


def lifted(snap: IndexSnapshot, annotation_ids: Iterable, up_to: int) -> list:
    """The tombstone list without those of ``annotation_ids`` applied at index version ``up_to`` or before
    (a rebuild found them in Label Studio after their delete: Label Studio has them again)."""
    ids = {str(a) for a in annotation_ids}
    return [t for t in snap.info.get(TOMBSTONES) or [] if not (str(t[0]) in ids and int(t[1]) <= up_to)]
