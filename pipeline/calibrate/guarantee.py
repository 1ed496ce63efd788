"""Thresholds with a guarantee: with probability >= 1 - delta, the precision of a label's boxes on new tasks is
at least the target (Learn then Test, fixed-sequence testing with exact binomial p-values).

``search.fit`` picks the threshold whose precision on the reviewed boxes is just at the target: on new tasks
it then falls below the target about as often as not. Here each candidate threshold is a hypothesis test
instead. For a threshold t, let n boxes be kept on the reviewed tasks and fp of them be false positives. If
the label's false-positive rate at t on new tasks were alpha = 1 - target or more, seeing fp or fewer would
have probability at most

    p(t) = P(Binomial(n, alpha) <= fp)

so "precision(t) < target" is rejected when p(t) <= delta; equivalently, when the one-sided Clopper-Pearson
lower bound on precision at confidence 1 - delta is >= the target (``precision_lower_bound``).

The thresholds are tested in a fixed order, from strict to lenient: the score grid 1.00, 0.99, ..., 0.00
(``STEP``), fixed before the data is seen. The walk starts at the first grid value that keeps at least
``n_min`` boxes (the fewest with which even zero false positives can pass: ``(1 - alpha)^n <= delta``; this
looks at how many boxes score above each value, never at which are right), and goes on while each test
passes; the last one that passed is the threshold. Fixed-sequence testing needs no correction for the number
of thresholds tested (the first true "precision < target" in the order has to be wrongly rejected for any
to be), so with probability >= 1 - delta the chosen threshold's precision is >= the target. When the first
test fails the label is refused and keeps its thresholds.

What is tested is the threshold people use: verify's P(yes) (with verify off: the grounding score), on the
candidates that pass the current filter and, with verify on, the current grounding threshold; those two stay
as they are. A candidate counts as right when it matches an annotated box with every candidate predicted
(``search.tables``), which can only understate precision. Assumption: the reviewed boxes are exchangeable
with the boxes of future tasks (same project, same models). The guarantee is per label; for all L labels at
once, use delta / L."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from pipeline.calibrate.search import Fit, Reviewed, readable, tables
from pipeline.config import LabelThresholds, Thresholds

DELTA = 0.1
STEP = 0.01


def p_value(fp: int, n: int, alpha: float) -> float:
    """P(Binomial(n, alpha) <= fp): how likely so few false positives would be at a false-positive rate of
    ``alpha``; 1.0 when nothing is kept."""
    if n <= 0:
        return 1.0
    return float(stats.binom.cdf(fp, n, alpha))


def precision_lower_bound(tp: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson lower bound on precision at confidence 1 - delta for tp right of n kept
    (0.0 when none is right)."""
    if n <= 0 or tp <= 0:
        return 0.0
    return float(stats.beta.ppf(delta, tp, n - tp + 1))


def min_boxes(target: float, delta: float) -> int:
    """The fewest kept boxes with which a threshold can pass at all: all right and (target)^n <= delta."""
    if target >= 1.0:
        return math.inf
    return max(1, math.ceil(math.log(delta) / math.log(target) - 1e-12))


def score_grid(step: float = STEP) -> np.ndarray:
    """The thresholds tested, strict to lenient: 1.0, 1.0 - step, ..., 0.0 (fixed before any data)."""
    n = int(round(1.0 / step))
    return np.round(1.0 - step * np.arange(n + 1), 10)


@dataclass
class Certificate:
    """What the test found for one label."""
    threshold: Optional[float]  # None: refused
    kept: int  # reviewed boxes kept at the threshold
    false_positives: int
    p_value: float
    precision_lower_bound: float
    tested: int  # thresholds tested (the walk's length)
    scored_by: str  # "verify" or "grounding"
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(vars(self))


def fixed_sequence(scores: np.ndarray, right: np.ndarray, target: float, delta: float, step: float = STEP
                   ) -> Certificate:
    """The most lenient grid threshold the fixed-sequence walk certifies for these boxes (``scores``, and
    whether each is ``right``); a NaN score always passes, as in the pipeline."""
    scores = np.where(np.isnan(scores), np.inf, np.asarray(scores, np.float64))
    right = np.asarray(right, bool)
    alpha = 1.0 - target
    need = min_boxes(target, delta)
    chosen = None
    tested = 0
    last = (0, 0, 1.0)
    for t in score_grid(step):
        keep = scores >= t - 1e-9
        n = int(keep.sum())
        if n < need:
            continue  # too few boxes above t for any outcome to pass: not yet in the sequence
        fp = int((keep & ~right).sum())
        p = p_value(fp, n, alpha)
        tested += 1
        if p > delta:
            if chosen is None:
                last = (n, fp, p)
            break
        chosen, last = float(t), (n, fp, p)
    n, fp, p = last
    if chosen is None:
        why = (f"{n} box(es), {fp} wrong: precision >= {target:g} cannot be certified at delta {delta:g} "
               f"(p = {p:.3g})") if tested else \
            f"{len(scores)} reviewed box(es): at least {need} are needed to certify precision >= {target:g} at " \
            f"delta {delta:g}"
        return Certificate(None, n, fp, p, precision_lower_bound(n - fp, n, delta), tested, "", why)
    return Certificate(chosen, n, fp, p, precision_lower_bound(n - fp, n, delta), tested, "")


def fit_guaranteed(tasks: Sequence[Reviewed], labels: Sequence[str], target: float, current: Thresholds,
                   delta: float = DELTA, match_iou: float = 0.5, step: float = STEP) -> Fit:
    """Per label, the verify threshold (the grounding threshold when verify is off) certified by
    ``fixed_sequence``; the filter and the other threshold stay at ``current``. ``Fit.certificates`` says
    what each test found."""
    tabs = tables(tasks, labels, match_iou)
    out = Fit(filter=None)
    for lab, t in tabs.items():
        passed = np.isnan(t.f) | (t.f >= current.filter)
        verify_on = bool((~np.isnan(t.v)).any())
        if verify_on:
            passed &= np.isnan(t.g) | (t.g >= current.grounding_for(lab))
            scores = t.v[passed]
        else:
            scores = t.g[passed]
        cert = fixed_sequence(scores, t.tp[passed], target, delta, step)
        cert.scored_by = "verify" if verify_on else "grounding"
        out.certificates[lab] = cert
        if cert.threshold is None:
            out.failed[lab] = cert.reason
            continue
        own = current.per_label.get(lab) or LabelThresholds()
        value = readable(cert.threshold)
        out.per_label[lab] = (LabelThresholds(grounding=current.grounding_for(lab), verify=value) if verify_on
                              else LabelThresholds(grounding=value, verify=own.verify))
    return out
