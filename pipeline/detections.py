"""The one detection type that flows from grounding to Label Studio JSON and COCO.

Boxes are pixel ``xyxy`` in the (EXIF-corrected) image the pipeline saw.  Every box a
grounder proposed stays in the object, with its fate: ``kept`` plus the ``stage`` that
last decided about it and, when dropped, the ``reason``.  ``active()`` gives the boxes
still alive; outputs only ever show those.

Everything a later stage learns about a box travels inside the object, never beside it:
``verify_scores`` (P(yes)), ``masks`` (per box a COCO RLE of its mask at the image's size, from
the grounder, e.g. Falcon, or the segment stage; compact, so a task with many boxes on a large
photo holds kilobytes, not one full-size plane per box) and ``identities`` (identify's ``Match``
per box).  ``extra`` holds any other per-box arrays (e.g. ``region_id`` of boxes read from Label
Studio).

The arrays are read-only: a stage changes a box's fate or attaches what it found through the
methods here (``drop``, ``mark``, ``set_verify_scores``, ``set_masks``, ``set_identities``,
``relabel``), which replace the arrays, so nobody edits them from outside by accident.
Indexing and ``merge`` return new objects and keep masks, identities and ``extra``.

>>> d = Detections(xyxy=[[0, 0, 10, 10], [5, 5, 20, 20]], scores=[0.9, 0.2], labels=["cat", "cat"])
>>> d.drop([False, True], "ground", "grounding score < 0.3")
>>> d.active().labels.tolist(), d.reason.tolist()
(['cat'], ['', 'grounding score < 0.3'])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import supervision as sv
from pycocotools import mask as coco_mask


def _arr(values, dtype, n=None):
    a = np.array(values if values is not None else [], dtype=dtype)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"expected {n} values, got {a.shape[0]}")
    return a


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _objects(values, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    if values is not None:
        values = list(values)
        if len(values) != n:
            raise ValueError(f"expected {n} values, got {len(values)}")
        for i, v in enumerate(values):
            out[i] = v
    return out


@dataclass(eq=False)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32; NaN where the model gives no confidence (Falcon)
    labels: np.ndarray  # (N,) str: the label the box is for (after query -> label mapping)
    queries: np.ndarray = None  # (N,) str: the text query that produced the box
    kept: np.ndarray = None  # (N,) bool
    stage: np.ndarray = None  # (N,) str: last stage that decided about the box
    reason: np.ndarray = None  # (N,) str: why it was dropped ("" when kept)
    verify_scores: np.ndarray = None  # (N,) float32 P(yes) from verify, NaN when not verified
    masks: np.ndarray = None  # (N,) object: COCO RLE {"size": [H, W], "counts": bytes} per box, None: no mask
    identities: np.ndarray = None  # (N,) object: identify's Match per box, None when not identified
    extra: dict = field(default_factory=dict)  # other per-box arrays (name -> (N,) array)

    def __post_init__(self):
        self.xyxy = _frozen(_arr(self.xyxy, np.float32).reshape(-1, 4))
        n = len(self.xyxy)
        self.scores = _frozen(_arr(self.scores, np.float32, n))
        self.labels = _frozen(_arr(self.labels, object, n))
        self.queries = _frozen(_arr(self.queries if self.queries is not None else self.labels, object, n))
        self.kept = _frozen(_arr(self.kept if self.kept is not None else np.ones(n, bool), bool, n))
        self.stage = _frozen(_arr(self.stage if self.stage is not None else ["ground"] * n, object, n))
        self.reason = _frozen(_arr(self.reason if self.reason is not None else [""] * n, object, n))
        vs = self.verify_scores if self.verify_scores is not None else np.full(n, np.nan)
        self.verify_scores = _frozen(_arr(vs, np.float32, n))
        masks = _objects(self.masks, n)
        for i, m in enumerate(masks):
            if m is not None and not isinstance(m, dict):
                masks[i] = encode_mask(m)
        self.masks = _frozen(masks)
        self.identities = _frozen(_objects(self.identities, n))
        extra = {}
        for k, v in (self.extra or {}).items():
            a = np.array(v, dtype=object if np.asarray(v).dtype.kind in "OUS" else None)
            if a.shape[:1] != (n,):
                raise ValueError(f"extra[{k!r}] has {a.shape[:1]} values for {n} boxes")
            extra[k] = _frozen(a)
        self.extra = extra

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        return cls(xyxy=np.zeros((0, 4)), scores=[], labels=[])

    @classmethod
    def merge(cls, parts: list["Detections"]) -> "Detections":
        """All boxes of ``parts`` in order; masks, identities and ``extra`` are kept (an ``extra`` key
        some parts lack is filled with None)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        keys = list(dict.fromkeys(k for p in parts for k in p.extra))
        extra = {k: np.concatenate([p.extra[k] if k in p.extra else np.full(len(p), None, dtype=object)
                                    for p in parts]) for k in keys}
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return cls(xyxy=cat("xyxy"), scores=cat("scores"), labels=cat("labels"), queries=cat("queries"),
                   kept=cat("kept"), stage=cat("stage"), reason=cat("reason"), verify_scores=cat("verify_scores"),
                   masks=cat("masks"), identities=cat("identities"), extra=extra)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, idx) -> "Detections":
        idx = np.asarray(idx)
        if idx.dtype != bool:
            idx = idx.astype(int).reshape(-1)
        return Detections(self.xyxy[idx], self.scores[idx], self.labels[idx], self.queries[idx], self.kept[idx],
                          self.stage[idx], self.reason[idx], self.verify_scores[idx],
                          self.masks[idx], self.identities[idx],
                          {k: v[idx] for k, v in self.extra.items()})

    # -- box fates ------------------------------------------------------------------------
    def _select(self, mask) -> np.ndarray:
        return np.asarray(mask, bool) & self.kept

    def drop(self, mask, stage: str, reason: str) -> None:
        """Mark currently kept boxes selected by ``mask`` as dropped by ``stage``."""
        sel = self._select(mask)
        kept, st, why = self.kept.copy(), self.stage.copy(), self.reason.copy()
        kept[sel], st[sel], why[sel] = False, stage, reason
        self.kept, self.stage, self.reason = _frozen(kept), _frozen(st), _frozen(why)

    def mark(self, mask, stage: str) -> None:
        """Record that ``stage`` looked at (and kept) the boxes in ``mask``."""
        sel = self._select(mask)
        st = self.stage.copy()
        st[sel] = stage
        self.stage = _frozen(st)

    def active_index(self) -> np.ndarray:
        return np.flatnonzero(self.kept)

    def active(self) -> "Detections":
        return self[self.kept]

    # -- what later stages attach ------------------------------------------------------------
    def relabel(self, labels: Sequence[str]) -> None:
        """Every box's label (e.g. the ground stage mapping queries to labels)."""
        self.labels = _frozen(_arr(labels, object, len(self)))

    def set_verify_scores(self, idx, values) -> None:
        vs = self.verify_scores.copy()
        vs[np.asarray(idx, int)] = np.asarray(values, np.float32)
        self.verify_scores = _frozen(vs)

    def set_masks(self, idx, masks) -> None:
        """Masks for boxes ``idx``: (K, H, W) bool arrays (or a list of them) or COCO RLE dicts, at the
        image's size; the other boxes keep theirs."""
        idx = np.asarray(idx, int).reshape(-1)
        masks = list(masks)
        if len(idx) != len(masks):
            raise ValueError(f"{len(masks)} masks for {len(idx)} boxes")
        out = self.masks.copy()
        for i, m in zip(idx, masks):
            out[i] = None if m is None else (m if isinstance(m, dict) else encode_mask(m))
        self.masks = _frozen(out)

    def mask(self, i: int) -> Optional[np.ndarray]:
        """Box ``i``'s mask as an (H, W) bool array, None when it has none."""
        rle = self.masks[i]
        return None if rle is None else coco_mask.decode([rle])[:, :, 0].astype(bool)

    def mask_areas(self) -> np.ndarray:
        """(N,) pixels in each box's mask (0 without one)."""
        return np.array([0 if r is None else int(coco_mask.area(r)) for r in self.masks], dtype=np.int64)

    def has_mask(self) -> np.ndarray:
        """(N,) bool: the box has a non-empty mask."""
        return self.mask_areas() > 0

    def set_identities(self, idx, matches) -> None:
        """identify's matches for boxes ``idx``; the other boxes keep theirs."""
        ids = self.identities.copy()
        for i, m in zip(np.asarray(idx, int).reshape(-1), matches):
            ids[i] = m
        self.identities = _frozen(ids)

    # -- box maths via supervision ------------------------------------------------------
    def apply_nms(self, iou: float, stage: str = "ground") -> None:
        """Per-label NMS over the kept boxes (supervision). Boxes without a score keep their order."""
        idx = self.active_index()
        if len(idx) < 2:
            return
        labels = self.labels[idx]
        _, class_id = np.unique(labels.astype(str), return_inverse=True)
        s = self.scores[idx]
        # Falcon gives no confidence: rank by proposal order instead (earlier = better).
        conf = np.where(np.isnan(s), 1.0 - np.arange(len(idx)) / (len(idx) + 1), s)
        preds = np.column_stack([self.xyxy[idx], conf, class_id]).astype(np.float64)
        keep = sv.box_non_max_suppression(preds, iou_threshold=iou)
        mask = np.zeros(len(self), bool)
        mask[idx[~keep]] = True
        self.drop(mask, stage, f"nms: IoU > {iou} with a better box of the same label")

    def clip_to(self, width: int, height: int) -> None:
        self.xyxy = _frozen(sv.clip_boxes(self.xyxy, (width, height)).astype(np.float32))

    def final_scores(self) -> np.ndarray:
        """The score shown to people: verify's P(yes) when verify ran, else the grounder's score."""
        return np.where(np.isnan(self.verify_scores), self.scores, self.verify_scores)

    def records(self) -> list[dict]:
        """Every box with its fate, JSON-ready (for run records and logs)."""
        out = []
        fs = self.final_scores()
        areas = self.mask_areas() if any(m is not None for m in self.masks) else None
        for i in range(len(self)):
            rec = {
                "xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                "label": str(self.labels[i]),
                "query": str(self.queries[i]),
                "grounding_score": None if np.isnan(self.scores[i]) else round(float(self.scores[i]), 4),
                "verify_score": None if np.isnan(self.verify_scores[i]) else round(float(self.verify_scores[i]), 4),
                "score": None if np.isnan(fs[i]) else round(float(fs[i]), 4),
                "kept": bool(self.kept[i]),
                "stage": str(self.stage[i]),
                "reason": str(self.reason[i]),
            }
            if areas is not None:
                rec["mask_pixels"] = int(areas[i])
            m = self.identities[i]
            if m is not None:
                rec["identity"] = m.to_json() if hasattr(m, "to_json") else str(m)
            for k, v in self.extra.items():
                rec[k] = v[i].item() if hasattr(v[i], "item") else v[i]
            out.append(rec)
        return out


def encode_mask(mask) -> dict:
    """An (H, W) mask as a COCO RLE (pycocotools), ``counts`` as bytes."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    return coco_mask.encode(np.asfortranarray(m.astype(np.uint8, copy=False)))


def mask_box(mask) -> np.ndarray:
    """The pixel xyxy box around a mask's pixels (float32; all zeros for an empty mask)."""
    m = np.asarray(mask, bool)
    ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
    if not len(ys):
        return np.zeros(4, np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)
