"""What evaluation reads of one Label Studio task (plain task JSON, as the API and exports send it).

Ground truth is the task's latest submitted, non-cancelled annotation (latest by ``updated_at``,
then ``created_at``, then id); a task without one is not reviewed and takes no part. Predictions
are grouped by ``model_version``; when a version predicted a task twice the latest counts.

Boxes are the RectangleLabels regions of one control (``from_name``; all of them when None) as
``Detections`` in pixels of the original image (percent of it when a region has no
``original_width``/``original_height``: IoU is the same either way). A box's score is the region's
``score`` (verify's P(yes) when verify ran), NaN when it has none. A rotated rectangle cannot be
compared by axis-aligned IoU and a region without a label has nothing to compare: both are skipped
and counted. This module reads; it does not match or score."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Optional

import numpy as np

from pipeline.convert import ls_to_xyxy
from pipeline.detections import Detections

RECTANGLE = "rectanglelabels"


@dataclass
class Annotated:
    """The annotation taken as ground truth."""
    id: int
    boxes: Detections  # scores NaN
    lead_time: Optional[float]  # seconds the annotator spent (Label Studio's lead_time)
    created_at: Optional[datetime]


@dataclass
class Predicted:
    """The latest prediction of one model_version."""
    id: int
    model_version: str
    boxes: Detections
    score: Optional[float]  # the prediction's task-level score
    created_at: Optional[datetime]


@dataclass
class EvalTask:
    id: int
    truth: Optional[Annotated]
    predictions: dict[str, Predicted] = field(default_factory=dict)
    skipped_regions: int = 0  # rotated or unlabelled rectangles left out

    def shown(self, version: str) -> bool:
        """Whether ``version``'s prediction existed when the annotation was submitted (unknown times: yes)."""
        p = self.predictions.get(version)
        if p is None or self.truth is None:
            return False
        return p.created_at is None or self.truth.created_at is None or p.created_at <= self.truth.created_at

    def any_shown(self) -> bool:
        return any(self.shown(v) for v in self.predictions)


def timestamp(value) -> Optional[datetime]:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def boxes_from_results(results: Iterable[dict], from_name: Optional[str] = None) -> tuple[Detections, int]:
    """(the RectangleLabels regions as Detections with ``extra['region_id']``, regions skipped)."""
    xyxy, scores, labels, ids = [], [], [], []
    skipped = 0
    for r in results or []:
        if not isinstance(r, dict) or r.get("type") != RECTANGLE:
            continue
        if from_name is not None and r.get("from_name") != from_name:
            continue
        value = r.get("value") or {}
        names = value.get(RECTANGLE) or []
        try:
            if not names:
                raise ValueError("no label")
            box = ls_to_xyxy(value, r.get("original_width") or 100, r.get("original_height") or 100)
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        score = r.get("score")
        xyxy.append(box)
        scores.append(np.nan if score is None else float(score))
        labels.append(str(names[0]))
        ids.append(str(r.get("id", "")))
    dets = Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), scores=scores, labels=labels,
                      extra={"region_id": np.asarray(ids, dtype=object)})
    return dets, skipped


def _latest(items: list[dict], *keys: str) -> dict:
    return max(items, key=lambda a: tuple(str(a.get(k) or "") for k in keys) + (a.get("id") or 0,))


def parse_task(task: dict, from_name: Optional[str] = None) -> EvalTask:
    """One task's ground truth and latest prediction per model_version."""
    skipped = 0
    truth = None
    submitted = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if submitted:
        a = _latest(submitted, "updated_at", "created_at")
        boxes, n = boxes_from_results(a.get("result"), from_name)
        skipped += n
        lead = a.get("lead_time")
        truth = Annotated(id=a.get("id"), boxes=boxes, lead_time=None if lead is None else float(lead),
                          created_at=timestamp(a.get("created_at")))
    by_version: dict[str, list[dict]] = {}
    for p in task.get("predictions") or []:
        if isinstance(p, dict):  # a plain export lists prediction ids only
            by_version.setdefault(str(p.get("model_version") or ""), []).append(p)
    predictions = {}
    for version, items in by_version.items():
        p = _latest(items, "created_at")
        boxes, n = boxes_from_results(p.get("result"), from_name)
        skipped += n
        score = p.get("score")
        predictions[version] = Predicted(id=p.get("id"), model_version=version, boxes=boxes,
                                         score=None if score is None else float(score),
                                         created_at=timestamp(p.get("created_at")))
    return EvalTask(id=task.get("id"), truth=truth, predictions=predictions, skipped_regions=skipped)
