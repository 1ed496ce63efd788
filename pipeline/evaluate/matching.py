"""Pair a task's predicted boxes with its annotated boxes: one ``BoxRecord`` per box.

This is the one place that decides what an annotator did to a prediction; the metrics, the
suspects list and threshold calibration all read its records. Outcomes of a predicted box:

- **kept**: an annotated box of the same label with IoU >= ``keep_iou`` (default 0.9);
- **moved**: the same label, ``match_iou`` <= IoU < ``keep_iou`` (``match_iou`` default 0.5);
- **relabeled**: no same-label match, but an annotated box of another label at IoU >= ``match_iou``;
- **deleted**: no annotated box at IoU >= ``match_iou``;

and an annotated box that no predicted box matched is **added** (the annotator drew it).

Matching is COCO's greedy rule: predicted boxes in descending score order (unscored ones rank as
0, ties in their stored order) each take the still unmatched annotated box of the same label with
the highest IoU >= ``match_iou``, so kept + moved are exactly the true positives at ``match_iou``;
the boxes left over are then paired the same way across labels (relabeled). IoU comes from
supervision (float32) rounded to 6 decimals, so a box exactly at a threshold is at it, not below."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import numpy as np
import supervision as sv

from pipeline.detections import Detections

KEPT, MOVED, RELABELED, DELETED, ADDED = "kept", "moved", "relabeled", "deleted", "added"
PREDICTED_OUTCOMES = (KEPT, MOVED, RELABELED, DELETED)
IOU_DECIMALS = 6  # supervision returns float32 IoU: rounded, a box exactly at a threshold (0.9 = 0.8999999762) counts


@dataclass(frozen=True, slots=True)
class BoxRecord:
    task_id: int
    model_version: str
    outcome: str  # one of PREDICTED_OUTCOMES or ADDED
    label: str  # the predicted box's label; for an added box, the annotated label
    score: Optional[float]  # the predicted box's score; None when it has none, and for added boxes
    iou: float  # IoU with the annotated box it was paired with, 0.0 when none
    truth_label: Optional[str]  # label of the paired (or added) annotated box
    pred_index: Optional[int]  # index into the prediction's boxes
    truth_index: Optional[int]  # index into the annotation's boxes

    @property
    def predicted(self) -> bool:
        return self.outcome != ADDED

    @property
    def true_positive(self) -> bool:
        """A predicted box that matched an annotated box of its label (kept or moved)."""
        return self.outcome in (KEPT, MOVED)


def check_thresholds(match_iou: float, keep_iou: float) -> None:
    if not 0 < match_iou <= keep_iou <= 1:
        raise ValueError(f"need 0 < match IoU ({match_iou}) <= keep IoU ({keep_iou}) <= 1")


def _greedy(ious: np.ndarray, order, allowed: np.ndarray, free_truth: np.ndarray, threshold: float) -> dict[int, int]:
    """Each predicted box in ``order`` takes the free annotated box with the highest IoU >= ``threshold``
    among those ``allowed`` for it; returns {predicted index: annotated index} and marks them taken."""
    out = {}
    for p in order:
        cand = np.where(allowed[p] & free_truth & (ious[p] >= threshold), ious[p], -1.0)
        if len(cand) and cand.max() >= 0:
            t = int(np.argmax(cand))
            out[int(p)] = t
            free_truth[t] = False
    return out


def match_boxes(pred: Detections, truth: Detections, *, match_iou: float = 0.5, keep_iou: float = 0.9,
                task_id: int = 0, model_version: str = "") -> list[BoxRecord]:
    """Records for every predicted box (in prediction order), then every added annotated box."""
    check_thresholds(match_iou, keep_iou)
    n_pred, n_truth = len(pred), len(truth)
    pred_labels, truth_labels = pred.labels.astype(str), truth.labels.astype(str)
    ious = (np.round(sv.box_iou_batch(pred.xyxy, truth.xyxy).astype(np.float64), IOU_DECIMALS)
            if n_pred and n_truth else np.zeros((n_pred, n_truth)))
    order = np.argsort(-np.where(np.isnan(pred.scores), 0.0, pred.scores), kind="stable")
    same = pred_labels[:, None] == truth_labels[None, :]
    free = np.ones(n_truth, bool)
    same_label = _greedy(ious, order, same, free, match_iou)
    other_label = _greedy(ious, [p for p in order if p not in same_label], ~same, free, match_iou)

    records = []
    for p in range(n_pred):
        score = None if np.isnan(pred.scores[p]) else round(float(pred.scores[p]), 6)  # float32 -> as stored
        t = same_label.get(p, other_label.get(p))
        if t is None:
            outcome, iou = DELETED, 0.0
        else:
            iou = float(ious[p, t])
            outcome = RELABELED if p not in same_label else KEPT if iou >= keep_iou else MOVED
        records.append(BoxRecord(task_id, model_version, outcome, str(pred_labels[p]), score, iou,
                                 None if t is None else str(truth_labels[t]), p, t))
    for t in np.flatnonzero(free):
        records.append(BoxRecord(task_id, model_version, ADDED, str(truth_labels[t]), None, 0.0,
                                 str(truth_labels[t]), None, int(t)))
    return records


def match_version(tasks: Iterable, version: str, *, match_iou: float = 0.5,
                  keep_iou: float = 0.9) -> Iterator[BoxRecord]:
    """Records of ``version`` over the reviewed tasks (``tasks.EvalTask``) it predicted."""
    for task in tasks:
        p = task.predictions.get(version)
        if p is None or task.truth is None:
            continue
        yield from match_boxes(p.boxes, task.truth.boxes, match_iou=match_iou, keep_iou=keep_iou,
                               task_id=task.id, model_version=version)
