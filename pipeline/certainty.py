"""The task-level prediction score: how sure the models were of every decision they made about a task.

Label Studio shows a prediction's ``score`` in the Data Manager's *Prediction score* column (averaged over
the task's predictions of the project's model_version), and its active-learning recipe sorts that column
lowest first. So the score says how close the task came to another outcome. A decision is a probability
``p`` against its threshold ``t``; its certainty is how far ``p`` is from ``t``, scaled so that 0 is "at the
threshold" and 1 is "as far as it can be on that side":

    certainty(p, t) = (p - t) / (1 - t)   when p >= t   (the model said yes)
                      (t - p) / t         when p <  t   (the model said no)

    task score = min over the task's decisions of certainty(p, t);  1.0 when nothing was decided

The decisions are the filter's P(yes) against ``thresholds.filter``, and each box verify looked at: its
P(yes) against its label's verify threshold (kept or dropped). With verify off, each box kept after
grounding: its grounding score against its label's grounding threshold. Boxes the grounder ranked under
its threshold do not count (grounders propose hundreds of them), nor do boxes NMS or ``max_boxes`` removed.

So a task the filter turned away at P(yes) = 0.02 (threshold 0.5) scores 0.96: certain, not 0; a task with
one box verified at P(yes) = 0.55 (threshold 0.5) scores 0.1: review it first. Used by the backend and
``predict`` (pipeline/predict/runner.py) and ``run`` (pipeline/predict/folder.py)."""
from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np

from pipeline.config import Thresholds
from pipeline.detections import Detections


def certainty(p: float, t: float) -> float:
    """How far ``p`` is from the threshold ``t``, in [0, 1] (see the module docstring)."""
    p = min(max(float(p), 0.0), 1.0)
    if p >= t:
        return 1.0 if t >= 1.0 else (p - t) / (1.0 - t)
    return (t - p) / t


def decisions(filter_p: Optional[float], dets: Detections, th: Thresholds) -> Iterable[tuple[float, float]]:
    """(p, threshold) of every decision the cascade made about a task."""
    if filter_p is not None and not math.isnan(filter_p):
        yield float(filter_p), th.filter
    for i in range(len(dets)):
        label = dets.labels[i]
        if not np.isnan(dets.verify_scores[i]):
            yield float(dets.verify_scores[i]), th.verify_for(label)
        elif dets.kept[i] and not np.isnan(dets.scores[i]):
            yield float(dets.scores[i]), th.grounding_for(label)


def task_certainty(filter_p: Optional[float], dets: Detections, th: Thresholds) -> float:
    """The task's prediction score: the least certain of its decisions, 1.0 when there were none."""
    return min((certainty(p, t) for p, t in decisions(filter_p, dets, th)), default=1.0)


def of_result(res, th: Thresholds) -> float:
    """``task_certainty`` of a ``PipelineResult``, against the thresholds its decisions were made with (a result
    routed through the student carries its own: the student's boxes weigh against their route ``accept``)."""
    th = getattr(res, "thresholds", None) or th
    return task_certainty(None if res.filter_answer is None else res.filter_answer.p_yes, res.detections, th)
