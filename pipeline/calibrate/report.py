"""One calibration, assembled: which labels can be calibrated (and why not), the thresholds fitted on every
reviewed task, what they and the current ones give on those tasks, and the held-out check (search.py).

Not here: where the tasks and candidates come from (candidates.py), the file written (thresholds_file.py)."""
from __future__ import annotations

from typing import Optional, Sequence

from rich.console import Console
from rich.table import Table

from pipeline.calibrate import FOLDS, MIN_BOXES
from pipeline.calibrate.guarantee import fit_guaranteed
from pipeline.calibrate.search import Counts, Reviewed, cross_validate, evaluate, fit, predicted, summary
from pipeline.config import Thresholds
from pipeline.evaluate.report import table_console


def _sum(counts: dict[str, Counts], labels) -> Counts:
    total = Counts()
    for lab in labels:
        total = total + counts[lab]
    return total


def _thresholds(th: Thresholds, label: str) -> dict:
    return {"grounding": th.grounding_for(label), "verify": th.verify_for(label)}


def _held_out(per_fold: list[dict[str, Counts]], labels) -> dict:
    folds = [_sum(c, labels) for c in per_fold]
    pooled = Counts()
    for c in folds:
        pooled = pooled + c
    return {"precision": summary([c.precision for c in folds]), "recall": summary([c.recall for c in folds]),
            "pooled": pooled.to_dict(), "per_fold": [c.to_dict() for c in folds]}


def calibrate(tasks: Sequence[Reviewed], labels: Sequence[str], target: float, current: Thresholds, *,
              min_boxes: int = MIN_BOXES, k: int = FOLDS, match_iou: float = 0.5,
              fold_of: Optional[Sequence[int]] = None, delta: Optional[float] = None) -> tuple[dict, Thresholds]:
    """(report, the new thresholds): labels with fewer than ``min_boxes`` annotated boxes, or boxes in fewer
    than ``k`` tasks, are refused with the reason and keep their current thresholds. ``delta``: risk-controlled
    thresholds (guarantee.py: precision >= target with probability >= 1 - delta) instead of the best fit."""
    filter_on = any(t.filter_p == t.filter_p for t in tasks)  # not NaN
    boxes = {lab: sum(int((t.truth.labels.astype(str) == lab).sum()) for t in tasks) for lab in labels}
    holding = {lab: sum(1 for t in tasks if (t.truth.labels.astype(str) == lab).any()) for lab in labels}
    refused = {}
    for lab in labels:
        if boxes[lab] < min_boxes:
            refused[lab] = f"{boxes[lab]} reviewed box(es), fewer than the minimum {min_boxes} (--min-boxes)"
        elif holding[lab] < k:
            refused[lab] = f"its {boxes[lab]} boxes are in {holding[lab]} task(s), fewer than the {k} folds (--folds)"
    eligible = [lab for lab in labels if lab not in refused]
    fitter = fit if delta is None else (
        lambda ts, labs, tgt, iou: fit_guaranteed(ts, labs, tgt, current, delta, iou))
    final = fitter(tasks, eligible, target, match_iou)
    refused.update(final.failed)
    new = final.thresholds(current)
    calibrated = list(final.per_label)
    before, after = evaluate(tasks, current, labels, match_iou), evaluate(tasks, new, labels, match_iou)
    per_fold = cross_validate(tasks, calibrated, target, current, k, match_iou, fold_of, fitter) if calibrated else []
    report = {
        "target_precision": target, "match_iou": match_iou, "folds": k, "min_boxes": min_boxes,
        "guarantee": None if delta is None else {
            "delta": delta, "method": "fixed-sequence binomial tests over a fixed score grid (Learn then Test)",
            "labels": {lab: c.to_dict() for lab, c in final.certificates.items()}},
        "reviewed_tasks": len(tasks),
        "filter": {"stage": "on" if filter_on else "off", "old": current.filter,
                   "new": new.filter if final.filter is not None else None},
        "labels": {},
        "all": {"labels": calibrated, "before": _sum(before, calibrated).to_dict(),
                "fitted": _sum(after, calibrated).to_dict(),
                "held_out": _held_out(per_fold, calibrated) if per_fold else None},
        "effect": {"boxes_before": sum(len(predicted(t, current)) for t in tasks),
                   "boxes_after": sum(len(predicted(t, new)) for t in tasks),
                   "tasks_past_filter_before": sum(1 for t in tasks if not t.filter_p < current.filter),
                   "tasks_past_filter_after": sum(1 for t in tasks if not t.filter_p < new.filter)},
    }
    for lab in labels:
        report["labels"][lab] = {
            "boxes": boxes[lab], "tasks": holding[lab], "status": "refused" if lab in refused else "calibrated",
            "reason": refused.get(lab, ""), "old": _thresholds(current, lab),
            "new": None if lab in refused else _thresholds(new, lab),
            "written": final.per_label[lab].model_dump(exclude_none=True) if lab in final.per_label else None,
            "before": before[lab].to_dict(), "fitted": None if lab in refused else after[lab].to_dict(),
            "held_out": None if lab in refused or not per_fold else _held_out(per_fold, [lab])}
    return report, new


# -- the terminal ---------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _spread(s: Optional[dict], k: int) -> str:
    if not s or s["mean"] is None:
        return "-"
    return (_pct(s["mean"]) + ("" if s["std"] is None else f" ± {100 * s['std']:.1f}")
            + ("" if s["folds"] == k else f" ({s['folds']} of {k} folds)"))  # a fold that predicted nothing


def _num(x) -> str:
    return "-" if x is None else f"{x:g}"


def print_report(report: dict, console: Optional[Console] = None) -> None:
    console = console or table_console(220)
    k = report["folds"]
    t = Table(title=f"calibration to precision >= {report['target_precision']:g} "
                    f"({report['reviewed_tasks']} reviewed tasks, {report['folds']}-fold cross-validation by task)")
    for col in ("label", "boxes", "grounding old -> new", "verify old -> new", "P / R now",
                "P / R fitted (in-sample)", "P held-out (mean ± sd)", "R held-out (mean ± sd)", "note"):
        t.add_column(col)
    for lab, r in report["labels"].items():
        new = r["new"] or {}
        t.add_row(lab, str(r["boxes"]),
                  f"{_num(r['old']['grounding'])} -> {_num(new.get('grounding')) if new else 'unchanged'}",
                  f"{_num(r['old']['verify'])} -> {_num(new.get('verify')) if new else 'unchanged'}",
                  f"{_pct(r['before']['precision'])} / {_pct(r['before']['recall'])}",
                  "-" if not r["fitted"] else f"{_pct(r['fitted']['precision'])} / {_pct(r['fitted']['recall'])}",
                  _spread((r["held_out"] or {}).get("precision"), k), _spread((r["held_out"] or {}).get("recall"), k),
                  r["reason"] or "calibrated")
    console.print(t)
    f = report["filter"]
    if f["stage"] == "off":
        console.print("filter: stage off, nothing to calibrate")
    else:
        new = "unchanged" if f["new"] is None else _num(f["new"])
        console.print(f"filter threshold: {_num(f['old'])} -> {new}")
    a, e = report["all"], report["effect"]
    if a["labels"]:
        h = a["held_out"] or {}
        pooled = h.get("pooled") or {}
        console.print(f"calibrated labels together: precision {_pct(a['before']['precision'])} -> "
                      f"{_pct(a['fitted']['precision'])} in-sample, {_spread(h.get('precision'), k)} held out; recall "
                      f"{_pct(a['before']['recall'])} -> {_pct(a['fitted']['recall'])} in-sample, "
                      f"{_spread(h.get('recall'), k)} held out (pooled over folds: P "
                      f"{_pct(pooled.get('precision'))}, R {_pct(pooled.get('recall'))})")
    g = report.get("guarantee")
    if g:
        for lab, c in g["labels"].items():
            if c["threshold"] is not None:
                console.print(f"{lab}: {c['scored_by']} >= {c['threshold']:g} keeps {c['kept']} reviewed boxes, "
                              f"{c['false_positives']} wrong: precision >= {report['target_precision']:g} with "
                              f"probability >= {1 - g['delta']:g} (p = {c['p_value']:.3g}; lower bound "
                              f"{_pct(c['precision_lower_bound'])}, {c['tested']} thresholds tested in order)")
    console.print(f"on the reviewed tasks: {e['boxes_before']} -> {e['boxes_after']} predicted boxes, "
                  f"{e['tasks_past_filter_before']} -> {e['tasks_past_filter_after']} tasks past the filter")
