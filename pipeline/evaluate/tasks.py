"""What evaluation reads of one Label Studio task (plain task JSON, as the API and exports send it).

The truth is the task's reviewed annotation and the boxes of its output controls, read as ``calibrate``
and ``export`` read them (pipeline/labelstudio/truth.py: latest submitted, non-cancelled annotation, ground
truth first; every output kind as the box that encloses it, a rotated rectangle included; never a tool
that only prompts the model; a region with several labels once per label). A task without a reviewed
annotation takes no part. Predictions are read the same way and grouped by ``model_version``; when a
version predicted a task twice, its latest counts.

Boxes are in pixels of the image as Label Studio recorded it: the first ``original_width`` x
``original_height`` among the task's regions, the annotation's first; when no region of the task has one,
every box of it is in percent (IoU is the same in percent as in pixels). Each box keeps its region's
``score`` (verify's P(yes) when verify ran), NaN when it has none. Boxes are clipped to the image (a region
Label Studio stores partly outside it counts with the part inside); ``extra["as_stored"]`` keeps each box
as stored, unclipped, for figures computed as pycocotools computes them. This module reads; it does not
match or score."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from pipeline.detections import Detections
from pipeline.labelstudio import truth
from pipeline.labelstudio.layout import Layout


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
    skipped_regions: int = 0  # malformed regions and ones with less than 1 px inside the image, left out

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


def parse_task(task: dict, layout: Layout) -> EvalTask:
    """One task's ground truth and latest prediction per model_version, in the layout's output controls."""
    a = truth.reviewed_annotation(task)
    annotated = [] if a is None else truth.output_results(a.get("result"), layout)
    stored = {"predictions": [p for p in task.get("predictions") or [] if isinstance(p, dict)]}  # not bare ids
    latest = {version or "": truth.latest_prediction(stored, version)
              for version in sorted({p.get("model_version") for p in stored["predictions"]}, key=str)}
    predicted = {v: truth.output_results(p.get("result"), layout) for v, p in latest.items()}
    width, height = truth.recorded_size(annotated, *predicted.values()) or (100, 100)
    skipped = 0

    def read(results: list[dict]) -> Detections:
        nonlocal skipped
        dets, left_out = truth.boxes(results, width, height)
        skipped += left_out
        return dets

    reviewed = None if a is None else Annotated(
        id=a.get("id"), boxes=read(annotated),
        lead_time=None if a.get("lead_time") is None else float(a["lead_time"]),
        created_at=timestamp(a.get("created_at")))
    predictions = {}
    for version, p in latest.items():
        score = p.get("score")
        predictions[version] = Predicted(id=p.get("id"), model_version=version, boxes=read(predicted[version]),
                                         score=None if score is None else float(score),
                                         created_at=timestamp(p.get("created_at")))
    return EvalTask(id=task.get("id"), truth=reviewed, predictions=predictions, skipped_regions=skipped)
