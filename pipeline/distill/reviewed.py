"""Which labels a Label Studio task contributes to a training set.

* **Reviewed**: the task's reviewed truth, read as ``evaluate`` and ``calibrate`` read it
  (pipeline/labelstudio/truth.py: its reviewed annotation, the regions of the labeling config's output
  controls, each as the box that encloses it, a rotated rectangle included). An annotation with no
  region makes the image a reviewed negative (a background image with an empty label file).
* **Pseudo-labels** (opt-in): a task with no annotation at all contributes its latest prediction of
  the chosen ``model_version``, keeping only regions whose score is >= the threshold (a region without
  a score takes its prediction's score). A prediction with no region left adds nothing: pseudo-labels
  only add positives, never unreviewed negatives. A task a person skipped (every annotation
  cancelled) contributes nothing.

A region with several labels counts once per label. Works on task dicts or label-studio-sdk task objects;
reads nothing else from Label Studio. The boxes themselves are computed when the image is fetched, in
its pixels (pipeline/distill/export.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from pipeline.labelstudio import truth
from pipeline.labelstudio.layout import Layout


@dataclass
class Example:
    """One task's image and the regions it contributes."""
    task_id: int
    image_url: str
    source: str  # "annotation" (reviewed) | "prediction" (pseudo-label)
    source_id: Optional[int]  # annotation id or prediction id
    results: list[dict] = field(default_factory=list)  # Label Studio regions of the output controls (with scores)
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
    low_score: int = 0  # pseudo-label regions under the threshold

    def to_dict(self) -> dict:
        return dict(vars(self))


def examples(tasks: Iterable, layout: Layout, pseudo_version: Optional[str] = None,
             pseudo_threshold: float = 0.5) -> tuple[list[Example], Tally]:
    """The examples of a project's tasks (see the module docstring), in task order; ``layout``: the labeling
    config read once (``truth.layout_of``), whose output controls hold the truth."""
    tally = Tally()
    out = []
    for raw in tasks:
        task = truth.as_dict(raw)
        tally.tasks += 1
        tid = int(task["id"])
        url = (task.get("data") or {}).get(layout.data_key)
        ann = truth.reviewed_annotation(task)
        ex = None
        if ann is not None:
            ex = Example(tid, url, "annotation", ann.get("id"), truth.output_results(ann.get("result"), layout))
        elif task.get("annotations"):  # every annotation was cancelled: a person skipped it, no pseudo-labels
            tally.only_cancelled += 1
            continue
        elif pseudo_version is not None and (pred := truth.latest_prediction(task, pseudo_version)) is not None:
            scored = [{**r, "score": r.get("score", pred.get("score"))}
                      for r in truth.output_results(pred.get("result"), layout)]
            kept = [r for r in scored if r["score"] is not None and float(r["score"]) >= pseudo_threshold]
            tally.low_score += len(scored) - len(kept)
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
