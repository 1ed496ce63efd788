"""What evaluation reads of one Label Studio task (plain task JSON, as the API and exports send it).

Which annotation is the truth and which boxes a result holds are decided where ``label-factory
export`` decides them (pipeline/distill/reviewed.py): the task's latest submitted, non-cancelled
annotation (by ``updated_at``, then id; a task without one is not reviewed and takes no part), the
RectangleLabels regions of one control, a rotated rectangle skipped and counted (axis-aligned IoU
cannot compare it), a region with several labels once per label. Predictions are grouped by
``model_version``; when a version predicted a task twice, its latest counts.

Here those regions become ``Detections`` in pixels of the original image, each with its region's
``score`` (verify's P(yes) when verify ran), NaN when it has none. A region without
``original_width``/``original_height`` (predictions imported from other tools have none) takes the
size another region of the task recorded, the annotation's first; when no region of the task has one,
every box of it is in percent (IoU is the same in percent as in pixels). Boxes are clipped to the
image (a region Label Studio stores partly outside it counts with the part inside); ``extra["as_stored"]``
keeps each box as stored, unclipped, for figures computed as pycocotools computes them. This module
reads; it does not match or score."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

import numpy as np

from pipeline.detections import Detections
from pipeline.distill.reviewed import Region, Tally, latest_annotation, latest_prediction, rectangles
from pipeline.labelstudio.coords import rect_corners, rect_to_xyxy


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


def boxes(regions: list[Region], tally: Tally, size: tuple[int, int] = (100, 100)) -> Detections:
    """Regions as Detections, clipped to the image (``extra["as_stored"]``: unclipped); a region without its
    own size is measured in ``size``. A rectangle with less than 1 px inside its image is left out and counted
    in ``tally.degenerate``."""
    xyxy, stored, kept = [], [], []
    for r in regions:
        w, h = r.original_size or size
        try:
            xyxy.append(rect_to_xyxy(r.value, w, h))
        except ValueError:
            tally.degenerate += 1
            continue
        corners = rect_corners(r.value, w, h)  # not rotated (rectangles() skips those): corners 0 and 2
        stored.append([*corners[0], *corners[2]])
        kept.append(r)
    return Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), labels=[r.label for r in kept],
                      scores=[np.nan if r.score is None else r.score for r in kept],
                      extra={"as_stored": np.asarray(stored, np.float32).reshape(-1, 4)})


def task_size(*region_lists: list[Region]) -> tuple[int, int]:
    """The first ``original_size`` among the regions (the annotation's first), else percent (100 x 100)."""
    return next((r.original_size for regions in region_lists for r in regions if r.original_size), (100, 100))


def parse_task(task: dict, from_name: str) -> EvalTask:
    """One task's ground truth and latest prediction per model_version."""
    tally = Tally()
    a = latest_annotation(task)
    truth_regions = [] if a is None else rectangles(a.get("result"), from_name, tally)
    stored = {"predictions": [p for p in task.get("predictions") or [] if isinstance(p, dict)]}  # not bare ids
    latest = {version or "": latest_prediction(stored, version)
              for version in sorted({p.get("model_version") for p in stored["predictions"]}, key=str)}
    predicted_regions = {v: rectangles(p.get("result"), from_name, tally) for v, p in latest.items()}
    size = task_size(truth_regions, *predicted_regions.values())
    truth = None if a is None else Annotated(
        id=a.get("id"), boxes=boxes(truth_regions, tally, size),
        lead_time=None if a.get("lead_time") is None else float(a["lead_time"]),
        created_at=timestamp(a.get("created_at")))
    predictions = {}
    for version, p in latest.items():
        score = p.get("score")
        predictions[version] = Predicted(id=p.get("id"), model_version=version,
                                         boxes=boxes(predicted_regions[version], tally, size),
                                         score=None if score is None else float(score),
                                         created_at=timestamp(p.get("created_at")))
    return EvalTask(id=task.get("id"), truth=truth, predictions=predictions,
                    skipped_regions=tally.rotated + tally.degenerate)
