"""Deterministic train/val/test split by task id.

A task's split depends only on its id (sha256 of the id -> a number in [0, 1) compared with the
cumulative ratios), so a task never changes split when the project grows or the export is re-run,
and no image of the test set leaks into training in a later round.

Tiny data sets: training needs a train and a val image. With at least 2 images, an empty train or
val split takes one image from the largest other split (the one whose hash lies nearest to the
empty split's range), so neither is empty; with 1 image it stays in train (val is empty and
``label-factory train`` refuses the export). test may be empty."""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or ``"8,1,1"``) -> ratios summing to 1; raises ValueError with the reason."""
    try:
        parts = [float(p) for p in str(text).split(",")]
    except ValueError:
        raise ValueError(f"split ratios {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"split ratios {text!r}: expected three non-negative numbers train,val,test, e.g. 0.8,0.1,0.1")
    total = sum(parts)
    return tuple(p / total for p in parts)  # type: ignore[return-value]


def unit_hash(task_id) -> float:
    """A stable number in [0, 1) for a task id (same on every machine and Python version)."""
    digest = hashlib.sha256(f"label-factory-split:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(task_ids: Iterable, ratios: Sequence[float] = DEFAULT_RATIOS) -> dict:
    """task id -> "train" | "val" | "test", with the tiny-data-set rule in the module docstring."""
    ids = list(dict.fromkeys(task_ids))
    r_train, r_val = float(ratios[0]), float(ratios[1])
    u = {t: unit_hash(t) for t in ids}
    out = {t: "train" if u[t] < r_train else "val" if u[t] < r_train + r_val else "test" for t in ids}
    if len(ids) < 2:
        return {t: "train" for t in ids}
    members = {s: sorted((t for t in ids if out[t] == s), key=lambda t: u[t]) for s in SPLITS}
    for need in ("train", "val"):
        if members[need]:
            continue
        donor = max((s for s in SPLITS if s != need and len(members[s]) > (1 if s in ("train", "val") else 0)),
                    key=lambda s: len(members[s]))
        # the donor's image nearest to the empty split's hash range: train lies below val, val below test
        moved = members[donor][0] if SPLITS.index(donor) > SPLITS.index(need) else members[donor][-1]
        members[donor].remove(moved)
        members[need].append(moved)
        out[moved] = need
    return out


def ids_digest(task_ids: Iterable) -> str:
    """sha256 of the sorted task ids: names the data snapshot a model was trained on."""
    blob = ",".join(str(t) for t in sorted(int(t) for t in task_ids))
    return hashlib.sha256(blob.encode()).hexdigest()
