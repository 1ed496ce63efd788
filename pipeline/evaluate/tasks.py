"""What evaluation reads of one Label Studio task (plain task JSON, as the API and exports send it).

Which annotation is the truth and which boxes a result holds are decided where ``label-factory
export`` decides them (pipeline/distill/reviewed.py): the task's latest submitted, non-cancelled
annotation (by ``updated_at``, then id; a task without one is not reviewed and takes no part), the
RectangleLabels regions of one control, a rotated rectangle skipped and counted (axis-aligned IoU
cannot compare it), a region with several labels once per label. Predictions are grouped by
``model_version``; when a version predicted a task twice, its latest counts.

Here those regions become ``Detections`` in pixels of the original image (percent of it when a
region has no ``original_width``/``original_height``: IoU is the same either way), each with its
region's ``score`` (verify's P(yes) when verify ran), NaN when it has none. This module reads; it
does not match or score."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import numpy as np

from pipeline.detections import Detections
from pipeline.distill.reviewed import Tally, latest_annotation, latest_prediction, rectangles
from pipeline.labelstudio.coords import rect_to_xyxy


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
    skipped_regions: int = 0  # rotated rectangles and ones with less than 1 px inside the image, left out

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


def boxes(result, from_name: str, tally: Tally) -> Detections:
    """The RectangleLabels regions of ``from_name`` in a result list as Detections (a rectangle with less than
    1 px inside its image is left out and counted in ``tally.degenerate``)."""
    xyxy, kept = [], []
    for r in rectangles(result, from_name, tally):
        try:
            xyxy.append(rect_to_xyxy(r.value, *(r.original_size or (100, 100))))
        except ValueError:
            tally.degenerate += 1
            continue
        kept.append(r)
    return Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), labels=[r.label for r in kept],
                      scores=[np.nan if r.score is None else r.score for r in kept])


def parse_task(task: dict, from_name: str) -> EvalTask:
    """One task's ground truth and latest prediction per model_version."""
    tally = Tally()
    a = latest_annotation(task)
    truth = None if a is None else Annotated(
        id=a.get("id"), boxes=boxes(a.get("result"), from_name, tally),
        lead_time=None if a.get("lead_time") is None else float(a["lead_time"]),
        created_at=timestamp(a.get("created_at")))
    predictions = {}
    stored = {"predictions": [p for p in task.get("predictions") or [] if isinstance(p, dict)]}  # not bare ids
    for version in sorted({p.get("model_version") for p in stored["predictions"]}, key=str):
        p = latest_prediction(stored, version)
        score = p.get("score")
        predictions[version or ""] = Predicted(id=p.get("id"), model_version=version or "",
                                         boxes=boxes(p.get("result"), from_name, tally),
                                         score=None if score is None else float(score),
                                         created_at=timestamp(p.get("created_at")))
    return EvalTask(id=task.get("id"), truth=truth, predictions=predictions,
                    skipped_regions=tally.rotated + tally.degenerate)
