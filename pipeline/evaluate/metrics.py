"""The figures of one model_version over a set of reviewed tasks, from the matching records.

- boxes: TP (kept + moved), FP (relabeled + deleted: no annotated box of the label at the match IoU),
  FN (annotated boxes no prediction of their label matched), precision, recall, F1, plus AP (ap.py) on
  boxes clipped to the image and, as pycocotools computes it, on boxes as stored (``*_as_stored``);
- images (the filter stage): a task whose annotation has no box is a negative, a task whose
  prediction has no box is predicted negative; per label the same with that label's boxes;
- acceptance: shares of predicted boxes kept / moved / relabeled / deleted, and boxes added;
- scores: histograms of kept vs deleted boxes, reliability and ECE of "score = P(kept)";
- time: median lead_time of tasks annotated while this version's prediction existed.

Every "all" row sums counts over labels (micro average); AP's "all" is the mean over labels."""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Iterable, Optional

from pipeline.evaluate import ap, calibration
from pipeline.evaluate.matching import ADDED, DELETED, KEPT, MOVED, PREDICTED_OUTCOMES, RELABELED, BoxRecord
from pipeline.evaluate.tasks import EvalTask

ALL = "all"
HISTOGRAM_BINS = 20


def ratio(num: float, den: float) -> Optional[float]:
    return num / den if den else None


def _f1(p: Optional[float], r: Optional[float]) -> Optional[float]:
    return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)


def _by_label(rows: dict[str, Counter]) -> dict[str, Counter]:
    total = Counter()
    for c in rows.values():
        total.update(c)
    return {ALL: total, **dict(sorted(rows.items()))}


def detection_counts(records: Iterable[BoxRecord]) -> dict[str, dict]:
    """{label or "all": {tp, fp, fn, precision, recall, f1}}."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        if r.predicted:
            rows[r.label]["tp" if r.true_positive else "fp"] += 1
        if r.outcome in (ADDED, RELABELED):  # the annotated box went unmatched within its label
            rows[r.truth_label]["fn"] += 1
    out = {}
    for label, c in _by_label(rows).items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        p, r = ratio(tp, tp + fp), ratio(tp, tp + fn)
        out[label] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": _f1(p, r)}
    return out


def acceptance(records: Iterable[BoxRecord]) -> dict[str, dict]:
    """{label or "all": {predicted, kept, moved, relabeled, deleted, added, *_share}} (shares of predicted boxes)."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        rows[r.label][r.outcome] += 1
    out = {}
    for label, c in _by_label(rows).items():
        n = sum(c[o] for o in PREDICTED_OUTCOMES)
        row = {"predicted": n, **{o: c[o] for o in PREDICTED_OUTCOMES}, "added": c[ADDED]}
        row.update({f"{o}_share": ratio(c[o], n) for o in PREDICTED_OUTCOMES})
        out[label] = row
    return out


def image_level(tasks: list[EvalTask], version: str) -> dict[str, dict]:
    """The filter stage as a classifier of tasks: {label or "all": {tp, fp, fn, tn, precision, recall}}."""
    rows: dict[str, Counter] = defaultdict(Counter)
    for t in tasks:
        truth = set(t.truth.boxes.labels.astype(str))
        pred = set(t.predictions[version].boxes.labels.astype(str))
        for label, (has, said) in [(ALL, (bool(truth), bool(pred)))] + [
                (lab, (lab in truth, lab in pred)) for lab in sorted(truth | pred)]:
            rows[label][("t" if has == said else "f") + ("p" if said else "n")] += 1
    out = {}
    for label in [ALL] + sorted(k for k in rows if k != ALL):
        c = rows[label]
        out[label] = {"tp": c["tp"], "fp": c["fp"], "fn": c["fn"], "tn": c["tn"],
                      "precision": ratio(c["tp"], c["tp"] + c["fp"]), "recall": ratio(c["tp"], c["tp"] + c["fn"])}
    return out


def score_figures(records: Iterable[BoxRecord], bins: int = 10) -> dict:
    """Score histograms by outcome and the reliability of score as P(kept), over scored predicted boxes."""
    scored = [r for r in records if r.predicted and r.score is not None]
    return {"histogram_bins": HISTOGRAM_BINS,
            "histograms": {o: calibration.histogram([r.score for r in scored if r.outcome == o], HISTOGRAM_BINS)
                           for o in (KEPT, MOVED, RELABELED, DELETED)},
            "unscored_boxes": sum(1 for r in records if r.predicted and r.score is None),
            "reliability": calibration.reliability([r.score for r in scored], [r.outcome == KEPT for r in scored],
                                                   bins)}


def median_lead_time(tasks: Iterable[EvalTask]) -> dict:
    times = [t.truth.lead_time for t in tasks if t.truth is not None and t.truth.lead_time is not None]
    return {"tasks": len(times), "median_seconds": statistics.median(times) if times else None}


def lead_times(tasks: list[EvalTask], versions: list[str]) -> dict:
    """Median seconds per task annotated with each version's prediction in place, and with none at all."""
    out = {"without_prediction": median_lead_time(t for t in tasks if t.truth is not None and not t.any_shown())}
    for v in versions:
        out[v] = median_lead_time(t for t in tasks if t.shown(v))
    return out


def version_metrics(tasks: list[EvalTask], version: str, records: list[BoxRecord], bins: int = 10) -> dict:
    """Everything about ``version`` over ``tasks`` (reviewed tasks it predicted) and their ``records``."""
    pairs = [(t.id, t.predictions[version].boxes, t.truth.boxes) for t in tasks]
    average = ap.average_precision(pairs)
    stored = ap.average_precision(pairs, as_stored=True) if ap.any_clipped(pairs) else average
    detection = detection_counts(records)
    for label, row in detection.items():
        a, s = (average, stored) if label == ALL else (average["labels"].get(label, {}),
                                                       stored["labels"].get(label, {}))
        row["ap50"], row["ap50_95"] = a.get("ap50"), a.get("ap50_95")
        row["ap50_as_stored"], row["ap50_95_as_stored"] = s.get("ap50"), s.get("ap50_95")
    return {
        "model_version": version,
        "tasks": len(tasks),
        "boxes": {"predicted": sum(len(t.predictions[version].boxes) for t in tasks),
                  "annotated": sum(len(t.truth.boxes) for t in tasks)},
        "detection": detection,
        "images": image_level(tasks, version),
        "acceptance": acceptance(records),
        "scores": score_figures(records, bins),
        "pr_curves": {"recall": average["recall_points"],
                      "labels": {lab: v["pr_curve"] for lab, v in average["labels"].items() if v["pr_curve"]}},
    }
