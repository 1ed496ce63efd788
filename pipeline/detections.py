"""The one detection type that flows from grounding to Label Studio JSON and COCO.

Boxes are pixel ``xyxy`` in the (EXIF-corrected) image the pipeline saw.  Every box a
grounder proposed stays in the object, with its fate: ``kept`` plus the ``stage`` that
last decided about it and, when dropped, the ``reason``.  ``active()`` gives the boxes
still alive; outputs only ever show those.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv


def _arr(values, dtype, n=None):
    a = np.asarray(values if values is not None else [], dtype=dtype)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"expected {n} values, got {a.shape[0]}")
    return a


@dataclass
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32; NaN where the model gives no confidence (Falcon)
    labels: np.ndarray  # (N,) str: the label the box is for (after query -> label mapping)
    queries: np.ndarray = None  # (N,) str: the text query that produced the box
    kept: np.ndarray = None  # (N,) bool
    stage: np.ndarray = None  # (N,) str: last stage that decided about the box
    reason: np.ndarray = None  # (N,) str: why it was dropped ("" when kept)
    verify_scores: np.ndarray = None  # (N,) float32 P(yes) from verify, NaN when not verified
    extra: dict = field(default_factory=dict)  # per-box arrays added by later stages (identify)

    def __post_init__(self):
        self.xyxy = _arr(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.scores = _arr(self.scores, np.float32, n)
        self.labels = _arr(self.labels, object, n)
        self.queries = _arr(self.queries if self.queries is not None else self.labels, object, n)
        self.kept = _arr(self.kept if self.kept is not None else np.ones(n, bool), bool, n)
        self.stage = _arr(self.stage if self.stage is not None else ["ground"] * n, object, n)
        self.reason = _arr(self.reason if self.reason is not None else [""] * n, object, n)
        vs = self.verify_scores if self.verify_scores is not None else np.full(n, np.nan)
        self.verify_scores = _arr(vs, np.float32, n)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        return cls(xyxy=np.zeros((0, 4)), scores=[], labels=[])

    @classmethod
    def merge(cls, parts: list["Detections"]) -> "Detections":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            queries=np.concatenate([p.queries for p in parts]),
            kept=np.concatenate([p.kept for p in parts]),
            stage=np.concatenate([p.stage for p in parts]),
            reason=np.concatenate([p.reason for p in parts]),
            verify_scores=np.concatenate([p.verify_scores for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    # -- box fates ------------------------------------------------------------------------
    def drop(self, mask, stage: str, reason: str) -> None:
        """Mark currently kept boxes selected by ``mask`` as dropped by ``stage``."""
        mask = np.asarray(mask, bool) & self.kept
        self.kept[mask] = False
        self.stage[mask] = stage
        self.reason[mask] = reason

    def mark(self, mask, stage: str) -> None:
        """Record that ``stage`` looked at (and kept) the boxes in ``mask``."""
        mask = np.asarray(mask, bool) & self.kept
        self.stage[mask] = stage

    def active_index(self) -> np.ndarray:
        return np.flatnonzero(self.kept)

    def active(self) -> "Detections":
        return self[self.kept]

    def __getitem__(self, idx) -> "Detections":
        idx = np.asarray(idx)
        extra = {k: np.asarray(v)[idx] for k, v in self.extra.items()}
        return Detections(self.xyxy[idx], self.scores[idx], self.labels[idx], self.queries[idx], self.kept[idx],
                          self.stage[idx], self.reason[idx], self.verify_scores[idx], extra)

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
        self.xyxy = sv.clip_boxes(self.xyxy, (width, height)).astype(np.float32)

    def to_supervision(self) -> sv.Detections:
        """The kept boxes as ``supervision.Detections`` (labels in ``data['class_name']``)."""
        a = self.active()
        return sv.Detections(xyxy=a.xyxy.astype(np.float32), confidence=a.scores,
                             data={"class_name": a.labels.astype(str), "query": a.queries.astype(str)})

    def final_scores(self) -> np.ndarray:
        """The score shown to people: verify's P(yes) when verify ran, else the grounder's score."""
        return np.where(np.isnan(self.verify_scores), self.scores, self.verify_scores)

    def records(self) -> list[dict]:
        """Every box with its fate, JSON-ready (for run records and logs)."""
        out = []
        fs = self.final_scores()
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
            for k, v in self.extra.items():
                rec[k] = v[i].item() if hasattr(v[i], "item") else v[i]
            out.append(rec)
        return out
