"""Which labels a Label Studio task contributes to a training set.

* **Reviewed**: the task's latest submitted annotation that was not cancelled (skipped), by
  ``updated_at`` then id. Its rectangles are the truth, and an annotation with no rectangle makes
  the image a reviewed negative (a background image with an empty label file).
* **Pseudo-labels** (opt-in): a task with no annotation at all contributes its latest prediction of
  the chosen ``model_version``, keeping only boxes whose score is >= the threshold (a box without a
  score takes its prediction's score). A prediction with no box left adds nothing: pseudo-labels
  only add positives, never unreviewed negatives. A task a person skipped (every annotation
  cancelled) contributes nothing.

Boxes are read from one ``<RectangleLabels>`` control on one ``<Image>`` (the labeling config's
first pair, as the backend writes them); a box with several labels counts once per label, and a
rotated box is skipped and counted (YOLO and COCO boxes are axis-aligned). Works on task dicts
or label-studio-sdk task objects; reads nothing else from Label Studio."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional


@dataclass
class Region:
    label: str
    value: dict  # Label Studio percent x/y/width/height(/rotation) of the displayed (EXIF-corrected) image
    score: Optional[float] = None
    original_size: Optional[tuple[int, int]] = None  # (width, height) Label Studio recorded, if any


@dataclass
class Example:
    """One task's image and the boxes it contributes."""
    task_id: int
    image_url: str
    source: str  # "annotation" (reviewed) | "prediction" (pseudo-label)
    source_id: Optional[int]  # annotation id or prediction id
    regions: list[Region] = field(default_factory=list)
    model_version: Optional[str] = None  # pseudo-labels: the prediction's model_version

    @property
    def pseudo(self) -> bool:
        return self.source == "prediction"


@dataclass
class Tally:
    """What was left out, and why (reported in the manifest and by the CLI)."""
    tasks: int = 0
    no_labels: int = 0  # no usable annotation and no (usable) prediction
    only_cancelled: int = 0
    no_image_url: int = 0
    rotated: int = 0
    degenerate: int = 0  # rectangles with less than 1 px inside the image
    low_score: int = 0  # pseudo-label boxes under the threshold

    def to_dict(self) -> dict:
        return dict(vars(self))


def as_dict(obj) -> dict:
    if obj is None or isinstance(obj, dict):
        return obj or {}
    return obj.model_dump(mode="json")


def _newest(items: list[dict]) -> Optional[dict]:
    key = lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0))  # noqa: E731
    return max(items, key=key) if items else None


def latest_annotation(task) -> Optional[dict]:
    """The latest submitted, non-cancelled annotation of a task (None if there is none)."""
    return _newest([a for a in map(as_dict, as_dict(task).get("annotations") or []) if not a.get("was_cancelled")])


def latest_prediction(task, model_version: str) -> Optional[dict]:
    preds = map(as_dict, as_dict(task).get("predictions") or [])
    return _newest([p for p in preds if p.get("model_version") == model_version])


def rectangles(result: Iterable[dict], from_name: str, tally: Optional[Tally] = None,
               default_score: Optional[float] = None) -> list[Region]:
    """The RectangleLabels boxes of ``from_name`` in a result list."""
    out = []
    for r in result or []:
        if not isinstance(r, dict) or r.get("from_name") != from_name or r.get("type") != "rectanglelabels":
            continue
        value = r.get("value") or {}
        if float(value.get("rotation", 0) or 0) != 0:
            if tally is not None:
                tally.rotated += 1
            continue
        size = (int(r["original_width"]), int(r["original_height"])) \
            if r.get("original_width") and r.get("original_height") else None
        score = r.get("score", default_score)
        for label in value.get("rectanglelabels") or []:
            out.append(Region(str(label), value, None if score is None else float(score), size))
    return out


def examples(tasks: Iterable, from_name: str, data_key: str, pseudo_version: Optional[str] = None,
             pseudo_threshold: float = 0.5) -> tuple[list[Example], Tally]:
    """The examples of a project's tasks (see the module docstring), in task order."""
    tally = Tally()
    out = []
    for raw in tasks:
        task = as_dict(raw)
        tally.tasks += 1
        tid = int(task["id"])
        url = (task.get("data") or {}).get(data_key)
        ann = latest_annotation(task)
        ex = None
        if ann is not None:
            ex = Example(tid, url, "annotation", ann.get("id"), rectangles(ann.get("result"), from_name, tally))
        elif task.get("annotations"):  # every annotation was cancelled: a person skipped it, no pseudo-labels
            tally.only_cancelled += 1
            continue
        elif pseudo_version is not None and (pred := latest_prediction(task, pseudo_version)) is not None:
            regions = rectangles(pred.get("result"), from_name, tally, default_score=pred.get("score"))
            kept = [r for r in regions if r.score is not None and r.score >= pseudo_threshold]
            tally.low_score += len(regions) - len(kept)
            if kept:
                ex = Example(tid, url, "prediction", pred.get("id"), kept, model_version=pseudo_version)
        if ex is None:
            tally.no_labels += 1
            continue
        if not isinstance(url, str) or not url:
            tally.no_image_url += 1
            continue
        out.append(ex)
    return out, tally
