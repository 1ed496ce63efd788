"""Human labels the models strongly disagree with, for a reviewer to look at again.

Only what the stored predictions can tell (a box score is verify's P(yes) when verify ran):

- **deleted a confident box**: a predicted box with score >= ``confident`` that the annotator deleted
  (no annotated box of any label overlaps it at the match IoU);
- **relabeled a confident box**: such a box whose annotated counterpart carries another label;
- **kept a doubted box**: an annotated box that a prediction of the same label matched (kept or moved)
  with score <= ``doubtful``.

Strongest first (the further the score from the annotator's decision, the higher); each with the
link that opens the task in Label Studio."""
from __future__ import annotations

from typing import Iterable

from pipeline.evaluate.matching import DELETED, KEPT, MOVED, RELABELED, BoxRecord

DELETED_CONFIDENT = "deleted a confident box"
RELABELED_CONFIDENT = "relabeled a confident box"
KEPT_DOUBTED = "kept a doubted box"


def task_link(url: str, project_id: int, task_id: int) -> str:
    return f"{url.rstrip('/')}/projects/{project_id}/data?task={task_id}"


def find_suspects(records: Iterable[BoxRecord], *, url: str, project_id: int, confident: float = 0.9,
                  doubtful: float = 0.1) -> list[dict]:
    out = []
    for r in records:
        if r.score is None:
            continue
        if r.outcome in (DELETED, RELABELED) and r.score >= confident:
            kind, strength = (DELETED_CONFIDENT if r.outcome == DELETED else RELABELED_CONFIDENT), r.score
        elif r.outcome in (KEPT, MOVED) and r.score <= doubtful:
            kind, strength = KEPT_DOUBTED, 1.0 - r.score
        else:
            continue
        label = r.label if r.outcome != RELABELED else f"{r.label} -> {r.truth_label}"
        out.append({"task": r.task_id, "model_version": r.model_version, "kind": kind, "label": label,
                    "score": r.score, "iou": round(r.iou, 4), "strength": strength,
                    "link": task_link(url, project_id, r.task_id)})
    out.sort(key=lambda s: (-s["strength"], s["task"], s["model_version"]))
    return out
