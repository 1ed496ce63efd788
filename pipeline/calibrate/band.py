"""The routing band of each label (``route.per_label: {label: {floor, accept}}``, pipeline/route.py), chosen from
reviewed tasks and the routing student's boxes on them.

* ``accept``: the student's score from which its boxes alone reach the target precision, no verify asked: the
  threshold ``search.best_cut`` picks (most right boxes at precision >= target on the reviewed tasks), or,
  with ``delta``, the one ``guarantee.fixed_sequence`` certifies (precision >= target on new tasks with
  probability >= 1 - delta).
* ``floor``: the score under which the student's boxes are dropped unseen: the highest 0.01 step that still
  keeps ``keep_recall`` of the student's right boxes (the band between floor and accept goes to verify, whose
  own threshold decides there, so the floor trades verify calls for recall, not precision);
* then the floors are raised together, if need be, to the lowest 0.01 step at which at most ``to_cascade`` of
  the reviewed images hold more than ``max_uncertain`` boxes in their bands (each floor capped at its accept):
  such an image goes through the whole cascade (pipeline/route.py), and a floor that keeps every low-scoring box
  would send almost every image there, leaving the route nothing to save. What the raise costs (the right boxes
  under the new floor) is reported with the band.

The candidates are the student's boxes with every threshold at 0 (``Reviewed.candidates.scores`` are its
scores), matched to the annotated boxes as ``search.tables`` matches them."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from pipeline.calibrate.guarantee import fixed_sequence
from pipeline.calibrate.search import Reviewed, best_cut, final_scores, readable
from pipeline.config import ProjectConfig, Route, RouteBand, Stages
from pipeline.detections import Detections
from pipeline.evaluate.matching import match_boxes

KEEP_RECALL = 0.98
TO_CASCADE = 0.1  # the share of reviewed images the band may send through the whole cascade


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
             keep_recall: float = KEEP_RECALL, match_iou: float = 0.5, route: Optional[Route] = None,
             verify_on: bool = True, to_cascade: float = TO_CASCADE) -> tuple[dict[str, RouteBand], dict]:
    """(label -> band, label -> what was found: boxes, right, accept's precision or certificate, the floor's raise,
    or why refused). ``route``, the route being calibrated, gives ``max_uncertain`` (with ``verify_on`` false: 0,
    as pipeline/route.py decides) and the band of the labels not calibrated here (none: their boxes dropped,
    ``max_uncertain`` 3)."""
    boxes = _student_boxes(tasks, match_iou)
    bands, found = {}, {}
    for lab in labels:
        g = np.concatenate([sc[labs == lab] for labs, sc, _ in boxes]) if boxes else np.empty(0)
        tp = np.concatenate([r[labs == lab] for labs, _, r in boxes]) if boxes else np.empty(0, bool)
        info = {"boxes": len(tp), "right": int(tp.sum())}
        if delta is None:
            cut = best_cut(g, tp, target)
            accept = None if cut is None else cut[2]
            if cut is not None:
                info.update(kept=cut[0] + cut[1], precision=cut[0] / (cut[0] + cut[1]))
        else:
            cert = fixed_sequence(g, tp, target, delta)
            accept = cert.threshold
            info["certificate"] = cert.to_dict()
        floor = floor_for(g, tp, keep_recall)
        if accept is None or floor is None:
            info["refused"] = ("no right box of the student's" if floor is None else
                               f"no student score reaches precision {target:g}"
                               + ("" if delta is None else f" with probability >= {1 - delta:g}"))
            found[lab] = info
            continue
        accept = readable(accept)
        bands[lab] = RouteBand(floor=min(floor, accept), accept=accept)
        found[lab] = info
    limit = (route.max_uncertain if route is not None else 3) if verify_on else 0
    bands = _raise_floors(boxes, bands, found, route, limit, to_cascade)
    for lab, band in bands.items():
        found[lab]["band"] = band.model_dump()
    return bands, found


def _student_boxes(tasks: Sequence[Reviewed], match_iou: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per reviewed task: its student boxes' (labels, scores, right), matched as ``search.tables`` matches them
    (a score may be NaN: each use says how it counts)."""
    out = []
    for task in tasks:
        c = task.candidates
        right = np.zeros(len(c), bool)
        for r in match_boxes(Detections(xyxy=c.xyxy, scores=final_scores(c), labels=c.labels), task.truth,
                             match_iou=match_iou, keep_iou=1.0):
            if r.predicted and r.true_positive:
                right[r.pred_index] = True
        out.append((c.labels.astype(str), c.scores.astype(np.float64), right))
    return out


def _raise_floors(boxes, bands: dict[str, RouteBand], found: dict, route: Optional[Route], max_uncertain: int,
                  to_cascade: float) -> dict[str, RouteBand]:
    """``bands`` with every floor raised to at least the lowest 0.01 step ``f`` at which at most ``to_cascade`` of
    the tasks hold more than ``max_uncertain`` boxes between floor and accept (a label without a band here has
    ``route``'s, or none); ``found`` gets, per label, that share and, when raised, the floor before and the share
    of right boxes the new floor keeps."""
    if not bands or not boxes:
        return bands

    def others(lab: str) -> tuple[float, float]:
        return (route.floor_for(lab), route.accept_for(lab)) if route is not None else (2.0, 2.0)

    def floors_at(f: float) -> dict[str, float]:
        return {lab: min(max(b.floor, f), b.accept) for lab, b in bands.items()}

    def share_to_cascade(floors: dict[str, float]) -> float:
        over = 0
        for labels, scores, _ in boxes:
            scores = np.nan_to_num(scores, nan=0.0)  # as pipeline/route.py decides
            lo = np.array([floors[lab] if lab in floors else others(lab)[0] for lab in labels])
            hi = np.array([bands[lab].accept if lab in bands else others(lab)[1] for lab in labels])
            over += int(((scores >= lo) & (scores < hi)).sum() > max_uncertain)
        return over / len(boxes)

    for step in range(101):
        floors = floors_at(step / 100)
        share = share_to_cascade(floors)
        if share <= to_cascade + 1e-12:
            break
    out = {}
    for lab, b in bands.items():
        out[lab] = RouteBand(floor=floors[lab], accept=b.accept)
        found[lab]["to_cascade"] = share
        if floors[lab] > b.floor:
            scores = np.concatenate([s[(labs == lab) & r] for labs, s, r in boxes])
            found[lab]["floor_raised"] = {"from": b.floor, "right_kept": float((scores >= floors[lab]).mean())
                                          if len(scores) else None}
    return out
