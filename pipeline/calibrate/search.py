"""Choose thresholds from reviewed tasks' candidate scores, and measure them on tasks they were not chosen on.

A ``Reviewed`` task holds every candidate box the cascade proposed with all thresholds at zero (each with
its grounding score and verify P(yes)), the filter's P(yes), and the boxes the annotator kept. Applying a
set of thresholds to it gives exactly the boxes the pipeline would predict (``predicted``): a grounding
threshold only removes boxes from the candidates NMS kept at zero (a box can only be suppressed by a
higher-scored one, so NMS over the survivors of a threshold keeps the same boxes), and the candidates
were capped at ``max_boxes`` as the pipeline caps them.

``fit`` searches, per label, the grounding and verify thresholds that find the most annotated boxes
(true positives at ``match_iou``) with precision >= the target, and one filter threshold for all labels
that maximises the boxes found over the labels being calibrated (ties: the higher threshold, which saves
model calls). Thresholds are observed scores (a box at the threshold is kept), at most ``GRID`` values
per grounding and filter search (quantiles), every distinct verify score. During the search a candidate
counts as a true positive if it matched an annotated box when every candidate was predicted (greedy, by
score, as evaluate matches); leaving boxes out can only free annotated boxes for the others, so the
search never overstates precision or recall. What is reported is measured exactly: the thresholds'
predicted boxes matched again (``evaluate``, with evaluate's ``match_boxes``).

``cross_validate`` is the held-out check: the tasks are split into k folds (seeded, by task); for each
fold the thresholds are chosen on the other k-1 and precision/recall are measured on it. A label whose
fit fails on a fold keeps the current thresholds there, as it would in use. The final thresholds are
fitted on every task; the folds say what to expect of them on tasks they have not seen."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from pipeline.config import LabelThresholds, Thresholds
from pipeline.detections import Detections
from pipeline.evaluate.matching import match_boxes

GRID = 50
SEED = 0


@dataclass
class Reviewed:
    task_id: int
    filter_p: float  # the filter's P(yes); NaN when the filter stage is off
    candidates: Detections  # scores: grounding score (NaN: none); verify_scores: P(yes) (NaN: verify off)
    truth: Detections  # the annotated boxes, labelled as the pipeline labels them


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> Optional[float]:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> Optional[float]:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall}


@dataclass
class Fit:
    filter: Optional[float]  # None: not searched (filter stage off)
    per_label: dict[str, LabelThresholds] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # label -> why no thresholds reach the target
    certificates: dict = field(default_factory=dict)  # label -> guarantee.Certificate (risk-controlled fits only)

    def thresholds(self, current: Thresholds) -> Thresholds:
        """``current`` with these thresholds: the fitted labels' own, the others' as they were."""
        data = current.model_dump()
        data["per_label"].update({lab: t.model_dump() for lab, t in self.per_label.items()})
        if self.filter is not None:
            data["filter"] = self.filter
        return Thresholds.model_validate(data)


# -- what the pipeline would predict ---------------------------------------------------------------
def final_scores(d: Detections) -> np.ndarray:
    """The box score people see: verify's P(yes), else the grounding score."""
    return np.where(np.isnan(d.verify_scores), d.scores, d.verify_scores)


def predicted(task: Reviewed, th: Thresholds) -> Detections:
    """The boxes the pipeline predicts for ``task`` with thresholds ``th`` (scored as it scores them)."""
    c = task.candidates
    if not len(c) or (not math.isnan(task.filter_p) and task.filter_p < th.filter):
        return Detections.empty()
    g_min = np.array([th.grounding_for(lab) for lab in c.labels], np.float64)
    v_min = np.array([th.verify_for(lab) for lab in c.labels], np.float64)
    keep = (np.isnan(c.scores) | (c.scores >= g_min)) & (np.isnan(c.verify_scores) | (c.verify_scores >= v_min))
    return Detections(xyxy=c.xyxy[keep], scores=final_scores(c)[keep], labels=c.labels[keep])


def evaluate(tasks: Iterable[Reviewed], th: Thresholds, labels: Sequence[str], match_iou: float = 0.5
             ) -> dict[str, Counts]:
    """Exact true/false positives and misses per label when ``th`` is applied to ``tasks``."""
    tasks = list(tasks)
    out = {lab: Counts() for lab in labels}
    for task in tasks:
        for r in match_boxes(predicted(task, th), task.truth, match_iou=match_iou, keep_iou=1.0):
            if r.predicted and r.label in out:
                if r.true_positive:
                    out[r.label].tp += 1
                else:
                    out[r.label].fp += 1
    for lab in labels:  # every annotated box of the label not found is a miss
        out[lab].fn = _truth_count(tasks, lab) - out[lab].tp
    return out


def _truth_count(tasks, label: str) -> int:
    return sum(int((t.truth.labels.astype(str) == label).sum()) for t in tasks)


# -- the search ---------------------------------------------------------------------------------------
@dataclass
class _Table:
    """Every candidate of one label: its task's filter P(yes), grounding score, verify P(yes), and whether
    it matched an annotated box when all candidates were predicted."""
    f: np.ndarray
    g: np.ndarray
    v: np.ndarray
    tp: np.ndarray
    truth: int


def tables(tasks: Sequence[Reviewed], labels: Sequence[str], match_iou: float) -> dict[str, _Table]:
    cols = {lab: ([], [], [], []) for lab in labels}
    for task in tasks:
        c = task.candidates
        everything = Detections(xyxy=c.xyxy, scores=final_scores(c), labels=c.labels)
        records = match_boxes(everything, task.truth, match_iou=match_iou, keep_iou=1.0)
        for r in records:
            if not r.predicted or r.label not in cols:
                continue
            i = r.pred_index
            f, g, v, tp = cols[r.label]
            f.append(task.filter_p)
            g.append(c.scores[i])
            v.append(c.verify_scores[i])
            tp.append(r.true_positive)
    return {lab: _Table(np.asarray(f, np.float64), np.asarray(g, np.float64), np.asarray(v, np.float64),
                        np.asarray(tp, bool), _truth_count(tasks, lab))
            for lab, (f, g, v, tp) in cols.items()}


def grid(values: np.ndarray) -> np.ndarray:
    """Candidate thresholds: the distinct observed values, at most GRID of them (quantiles)."""
    u = np.unique(values[~np.isnan(values)])
    if len(u) > GRID:
        u = np.unique(np.quantile(u, np.linspace(0, 1, GRID), method="lower"))
    return u


def best_cut(v: np.ndarray, tp: np.ndarray, target: float) -> Optional[tuple[int, int, float]]:
    """The verify threshold (an observed P(yes)) with precision >= ``target`` that keeps the most true
    positives, then the fewest false ones: (tp, fp, threshold); threshold NaN when verify is off (all
    candidates or none); None when no threshold reaches the target."""
    if not len(v):
        return None
    if np.isnan(v).all():
        t = int(tp.sum())
        return (t, len(tp) - t, math.nan) if t and t / len(tp) >= target else None
    v = np.where(np.isnan(v), 1.0, v)
    order = np.argsort(-v, kind="stable")
    vs, ctp = v[order], np.cumsum(tp[order])
    k = np.arange(1, len(vs) + 1)
    group_end = np.r_[vs[1:] != vs[:-1], True]  # a threshold keeps a whole group of equal scores
    ok = group_end & (ctp > 0) & (ctp >= target * k - 1e-9)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    best = idx[np.lexsort((k[idx], -ctp[idx]))[0]]
    return int(ctp[best]), int(k[best] - ctp[best]), float(vs[best])


def best_for_label(t: _Table, target: float, filter_min: float = -math.inf) -> Optional[tuple]:
    """(tp, fp, grounding threshold or NaN, verify threshold or NaN) for the candidates whose task passed the
    filter at ``filter_min``; None when nothing reaches the target."""
    passed = np.isnan(t.f) | (t.f >= filter_min)
    g, v, tp = t.g[passed], t.v[passed], t.tp[passed]
    best, best_key = None, None
    for g_min in [*grid(g)] or [math.nan]:
        sel = np.ones(len(g), bool) if math.isnan(g_min) else (np.isnan(g) | (g >= g_min))
        cut = best_cut(v[sel], tp[sel], target)
        if cut is None:
            continue
        key = (cut[0], -cut[1], -math.inf if math.isnan(g_min) else g_min)  # most found, fewest wrong, higher g
        if best_key is None or key > best_key:
            best, best_key = (cut[0], cut[1], g_min, cut[2]), key
    return best


def best_precision(t: _Table) -> float:
    """The highest precision any verify threshold gives over all candidates (for the refusal message)."""
    if not len(t.tp) or not t.tp.any():
        return 0.0
    v = np.where(np.isnan(t.v), 1.0, t.v)
    order = np.argsort(-v, kind="stable")
    ctp = np.cumsum(t.tp[order])
    return float(np.max(ctp / np.arange(1, len(ctp) + 1)))


def readable(threshold: float) -> float:
    """``threshold`` to 6 decimals, never above it (a float32 score of 0.7 is 0.69999998..: 0.699999 keeps it)."""
    r = round(float(threshold), 6)
    return r if r <= threshold else round(r - 1e-6, 6)


def fit(tasks: Sequence[Reviewed], labels: Sequence[str], target: float, match_iou: float = 0.5) -> Fit:
    """Per-label grounding/verify thresholds and the filter threshold (see the module docstring)."""
    tabs = tables(tasks, labels, match_iou)
    f_values = np.array([t.filter_p for t in tasks], np.float64)
    filter_grid = [*grid(f_values)] or [None]  # None: the filter stage is off
    chosen, chosen_key = None, None
    for f in filter_grid:
        per = {lab: best_for_label(tab, target, -math.inf if f is None else f) for lab, tab in tabs.items()}
        key = (sum(b[0] for b in per.values() if b is not None), -math.inf if f is None else f)
        if chosen_key is None or key > chosen_key:
            chosen, chosen_key = (f, per), key
    f, per = chosen
    if not any(b is not None for b in per.values()):
        f = None  # nothing reaches the target at any filter threshold: the filter's stays as it is
    out = Fit(filter=None if f is None else readable(f))
    for lab, b in per.items():
        if b is None:
            out.failed[lab] = (f"no threshold reaches precision {target:g}: at best {best_precision(tabs[lab]):.2f}"
                               f" ({tabs[lab].tp.sum()} of {len(tabs[lab].tp)} candidates match an annotated box)")
            continue
        _, _, g_min, v_min = b
        out.per_label[lab] = LabelThresholds(grounding=None if math.isnan(g_min) else readable(g_min),
                                             verify=None if math.isnan(v_min) else readable(v_min))
    return out


# -- the held-out check ------------------------------------------------------------------------------
def folds(tasks: Sequence[Reviewed], k: int, seed: int = SEED) -> list[int]:
    """Each task's fold (0..k-1): tasks in id order, shuffled with a fixed seed, dealt round-robin."""
    order = np.argsort([t.task_id for t in tasks], kind="stable")
    shuffled = order[np.random.default_rng(seed).permutation(len(tasks))]
    fold = [0] * len(tasks)
    for pos, i in enumerate(shuffled):
        fold[int(i)] = pos % k
    return fold


def cross_validate(tasks: Sequence[Reviewed], labels: Sequence[str], target: float, current: Thresholds,
                   k: int, match_iou: float = 0.5, fold_of: Optional[Sequence[int]] = None,
                   fitter: Optional[Callable[..., Fit]] = None) -> list[dict[str, Counts]]:
    """Per fold: the counts on that fold's tasks of thresholds fitted on the other folds' tasks (by ``fitter``,
    called as ``fitter(tasks, labels, target, match_iou)``; default ``fit``)."""
    fold_of = list(fold_of) if fold_of is not None else folds(tasks, k)
    out = []
    for j in range(k):
        train = [t for t, f in zip(tasks, fold_of) if f != j]
        test = [t for t, f in zip(tasks, fold_of) if f == j]
        th = (fitter or fit)(train, labels, target, match_iou).thresholds(current)
        out.append(evaluate(test, th, labels, match_iou))
    return out


def summary(values: Sequence[Optional[float]]) -> dict:
    """Mean and sample standard deviation of the defined values (a fold without predictions has no precision)."""
    v = [x for x in values if x is not None]
    return {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
            "folds": len(v)}
