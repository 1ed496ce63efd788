"""The routing band of each label (``route.per_label: {label: {floor, accept}}``, pipeline/route.py), chosen from
reviewed tasks and the routing student's boxes on them.

* ``accept``: the student's score from which its boxes alone reach the target precision, no verify asked: the
  threshold ``search.best_cut`` picks (most right boxes at precision >= target on the reviewed tasks), or,
  with ``delta``, the one ``guarantee.fixed_sequence`` certifies (precision >= target on new tasks with
  probability >= 1 - delta).
* ``floor``: the score under which the student's boxes are dropped unseen: the highest 0.01 step that still
  keeps ``keep_recall`` of the student's right boxes (the band between floor and accept goes to verify, whose
  own threshold decides there, so the floor trades verify calls for recall, not precision).

The candidates are the student's boxes with every threshold at 0 (``Reviewed.candidates.scores`` are its
scores), matched to the annotated boxes as ``search.tables`` matches them."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from pipeline.calibrate.guarantee import fixed_sequence
from pipeline.calibrate.search import Reviewed, best_cut, readable, tables
from pipeline.config import ProjectConfig, RouteBand, Stages

KEEP_RECALL = 0.98


def student_config(cfg: ProjectConfig) -> ProjectConfig:
    """``cfg`` with its route student as the grounder, asked for each label by name, and nothing else on: the
    project ``calibrate --route`` collects the student's boxes with."""
    return cfg.model_copy(update={
        "route": None, "queries": {lab: [lab] for lab in cfg.labels()},
        "stages": Stages(filter=False, ground=True, verify=False, identify=False),
        "providers": cfg.providers.model_copy(update={"grounder": cfg.route.provider()})})


def floor_for(scores: np.ndarray, right: np.ndarray, keep_recall: float = KEEP_RECALL) -> Optional[float]:
    """The highest 0.01 step keeping at least ``keep_recall`` of the right boxes (None: no right box)."""
    s = np.sort(np.nan_to_num(np.asarray(scores, np.float64)[np.asarray(right, bool)], nan=1.0))
    if not len(s):
        return None
    need = math.ceil(keep_recall * len(s) - 1e-9)
    at = s[len(s) - need]  # the need-th highest right score: a floor at or under it keeps `need` boxes
    return math.floor(at * 100 + 1e-9) / 100


def fit_band(tasks: Sequence[Reviewed], labels: Sequence[str], target: float, delta: Optional[float] = None,
             keep_recall: float = KEEP_RECALL, match_iou: float = 0.5) -> tuple[dict[str, RouteBand], dict]:
    """(label -> band, label -> what was found: boxes, right, accept's precision or certificate, or why refused)."""
    bands, found = {}, {}
    for lab, t in tables(tasks, labels, match_iou).items():
        right = int(t.tp.sum())
        info = {"boxes": len(t.tp), "right": right}
        if delta is None:
            cut = best_cut(t.g, t.tp, target)
            accept = None if cut is None else cut[2]
            if cut is not None:
                info.update(kept=cut[0] + cut[1], precision=cut[0] / (cut[0] + cut[1]))
        else:
            cert = fixed_sequence(t.g, t.tp, target, delta)
            accept = cert.threshold
            info["certificate"] = cert.to_dict()
        floor = floor_for(t.g, t.tp, keep_recall)
        if accept is None or floor is None:
            info["refused"] = ("no right box of the student's" if floor is None else
                               f"no student score reaches precision {target:g}"
                               + ("" if delta is None else f" with probability >= {1 - delta:g}"))
            found[lab] = info
            continue
        accept = readable(accept)
        bands[lab] = RouteBand(floor=min(floor, accept), accept=accept)
        found[lab] = {**info, "band": bands[lab].model_dump()}
    return bands, found
