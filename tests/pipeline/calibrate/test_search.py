"""Threshold search, exact evaluation and the held-out check (pipeline/calibrate/) on constructed candidates,
with every expected figure worked out by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.calibrate.report import calibrate
from pipeline.calibrate.search import Reviewed, cross_validate, evaluate, fit, folds, predicted
from pipeline.config import Thresholds
from pipeline.detections import Detections

NAN = math.nan
CURRENT = Thresholds(filter=0.5, grounding=0.1, verify=0.5)


def task(tid, cands, truths=1, label="A", filter_p=NAN) -> Reviewed:
    """``cands``: (grounding score, verify P(yes), hit): a hit lies exactly on the next annotated box, a miss
    far from every box. ``truths`` annotated boxes of ``label`` lie at x = 0, 100, 200, ..."""
    xyxy, g, v, labels, hit_no = [], [], [], [], 0
    for i, (gs, vs, hit) in enumerate(cands):
        if hit:
            xyxy.append([100 * hit_no, 0, 100 * hit_no + 50, 50])
            hit_no += 1
        else:
            xyxy.append([1000 + 100 * i, 500, 1050 + 100 * i, 550])
        g.append(gs)
        v.append(vs)
        labels.append(label)
    cand = Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), scores=g, labels=labels, verify_scores=v)
    truth = Detections(xyxy=[[100 * i, 0, 100 * i + 50, 50] for i in range(truths)], scores=[NAN] * truths,
                       labels=[label] * truths)
    return Reviewed(tid, filter_p, cand, truth)


# (grounding, verify, hit) per task; task 5's box was found by nothing
TASKS = [task(1, [(0.9, 0.95, True), (0.5, 0.40, False)]),
         task(2, [(0.8, 0.90, True), (0.6, 0.85, False)]),
         task(3, [(0.7, 0.80, True), (0.2, 0.90, False)]),
         task(4, [(0.3, 0.70, True), (0.4, 0.60, False)]),
         task(5, [])]


def test_fit_picks_the_thresholds_worked_out_by_hand():
    """Precision >= 0.75. Grounding 0.2 keeps all 8 candidates; by verify: 0.95 hit, 0.90 hit + 0.90 miss (a tie:
    kept together), 0.85 miss, 0.80 hit, 0.70 hit, ... -> only the top box reaches 0.75 (1 found). Grounding 0.3
    drops the 0.90 miss: 0.95 h, 0.90 h, 0.85 m, 0.80 h, 0.70 h -> 4 found, 1 wrong, precision 0.8 at verify
    0.70. Grounding 0.4 and up lose task 4's hit: at most 3 found. So grounding 0.3, verify 0.7."""
    f = fit(TASKS, ["A"], 0.75)
    assert f.filter is None  # the filter stage is off (NaN P(yes))
    a = f.per_label["A"]
    assert (a.grounding, a.verify) == (pytest.approx(0.3, abs=1e-6), pytest.approx(0.7, abs=1e-6))
    th = f.thresholds(CURRENT)
    assert [len(predicted(t, th)) for t in TASKS] == [1, 2, 1, 1, 0]
    c = evaluate(TASKS, th, ["A"])["A"]
    assert (c.tp, c.fp, c.fn) == (4, 1, 1) and c.precision == 0.8 and c.recall == 0.8
    now = evaluate(TASKS, CURRENT, ["A"])["A"]  # grounding 0.1, verify 0.5: all but the 0.40 miss
    assert (now.tp, now.fp, now.fn) == (4, 3, 1)


def test_unreachable_precision_is_refused_with_the_best_there_is():
    f = fit(TASKS, ["A"], 1.01)
    assert "A" not in f.per_label and f.filter is None
    assert f.failed["A"].startswith("no threshold reaches precision 1.01: at best 1.00")


def test_filter_threshold_keeps_every_hit_and_drops_what_it_can():
    """Filter P(yes) per task: 0.9, 0.8, 0.3 (only a miss there, verified at 0.95: above every hit), 0.6.
    Precision >= 0.9: with filter 0.3 the miss comes first whatever verify threshold (best 3 of 4); with 0.6
    the three hits remain and verify 0.8 keeps them all; 0.8 and up lose a hit. So filter 0.6, verify 0.8."""
    tasks = [task(1, [(0.5, 0.9, True)], filter_p=0.9), task(2, [(0.5, 0.8, True)], filter_p=0.8),
             task(3, [(0.5, 0.95, False)], truths=0, filter_p=0.3), task(4, [(0.5, 0.85, True)], filter_p=0.6)]
    f = fit(tasks, ["A"], 0.9)
    assert f.filter == pytest.approx(0.6, abs=1e-6)
    a = f.per_label["A"]
    assert (a.grounding, a.verify) == (pytest.approx(0.5, abs=1e-6), pytest.approx(0.8, abs=1e-6))
    c = evaluate(tasks, f.thresholds(CURRENT), ["A"])["A"]
    assert (c.tp, c.fp, c.fn) == (3, 0, 0)


def test_no_grounding_score_no_grounding_threshold():
    """Falcon gives no score: only verify is searched, grounding stays as it was."""
    tasks = [task(1, [(NAN, 0.9, True), (NAN, 0.6, False)]), task(2, [(NAN, 0.7, True)])]
    f = fit(tasks, ["A"], 1.0)
    assert f.per_label["A"].grounding is None and f.per_label["A"].verify == pytest.approx(0.7, abs=1e-6)
    assert f.thresholds(CURRENT).grounding_for("A") == 0.1


# two folds worked out by hand: fold 0 = tasks a, b; fold 1 = tasks c, d (target precision 0.6, no grounding)
FOLD_TASKS = [task(1, [(NAN, 0.9, True), (NAN, 0.6, False)]), task(2, [(NAN, 0.8, True), (NAN, 0.4, False)]),
              task(3, [(NAN, 0.7, True), (NAN, 0.75, False)]), task(4, [(NAN, 0.5, True), (NAN, 0.3, False)])]


def test_cross_validation_measures_thresholds_on_tasks_they_were_not_chosen_on():
    """Fit on c, d: 0.75 m, 0.7 h, 0.5 h, 0.3 m -> 2 of 3 at verify 0.5 (0.667); on a, b that keeps 0.9 h,
    0.6 m, 0.8 h: P 2/3, R 1. Fit on a, b: 0.9 h, 0.8 h -> 2 of 2 at verify 0.8; on c, d nothing is >= 0.8:
    no precision, R 0. Fitted on all four: 0.9 h, 0.8 h, 0.75 m, 0.7 h, 0.6 m, 0.5 h -> 4 of 6 at verify 0.5:
    in-sample recall 1.0, held out 0.5 (the check is not fooled by fitting to itself)."""
    per_fold = cross_validate(FOLD_TASKS, ["A"], 0.6, CURRENT, 2, fold_of=[0, 0, 1, 1])
    (a0, a1) = (per_fold[0]["A"], per_fold[1]["A"])
    assert (a0.tp, a0.fp, a0.fn) == (2, 1, 0) and (a1.tp, a1.fp, a1.fn) == (0, 0, 2)
    report, new = calibrate(FOLD_TASKS, ["A"], 0.6, CURRENT, min_boxes=4, k=2, fold_of=[0, 0, 1, 1])
    lab = report["labels"]["A"]
    assert lab["status"] == "calibrated" and new.verify_for("A") == pytest.approx(0.5, abs=1e-6)
    assert lab["fitted"]["precision"] == pytest.approx(4 / 6) and lab["fitted"]["recall"] == 1.0
    held = lab["held_out"]
    assert held["precision"] == {"mean": pytest.approx(2 / 3), "std": None, "folds": 1}
    assert held["recall"] == {"mean": 0.5, "std": pytest.approx(math.sqrt(0.5)), "folds": 2}
    assert held["pooled"] == {"tp": 2, "fp": 1, "fn": 2, "precision": pytest.approx(2 / 3), "recall": 0.5}


def test_too_few_boxes_or_tasks_are_refused_with_the_reason():
    report, new = calibrate(FOLD_TASKS, ["A"], 0.6, CURRENT, min_boxes=5, k=2)
    assert report["labels"]["A"]["status"] == "refused"
    assert report["labels"]["A"]["reason"] == "4 reviewed box(es), fewer than the minimum 5 (--min-boxes)"
    assert new == CURRENT and report["filter"]["new"] is None
    report, _ = calibrate(FOLD_TASKS, ["A"], 0.6, CURRENT, min_boxes=4, k=5)
    assert report["labels"]["A"]["reason"] == "its 4 boxes are in 4 task(s), fewer than the 5 folds (--folds)"


def test_folds_are_by_task_balanced_and_fixed():
    tasks = [task(i, []) for i in range(23)]
    f = folds(tasks, 5)
    assert sorted(np.bincount(f)) == [4, 4, 5, 5, 5]
    assert f == folds(list(reversed(tasks)), 5)[::-1]  # by task id, not by list order
    assert f == folds(tasks, 5)


def test_thresholds_are_written_readable_and_never_above_the_score_they_keep():
    from pipeline.calibrate.search import readable
    assert readable(0.3) == 0.3 and readable(0.5) == 0.5 and readable(1.0) == 1.0
    f32 = float(np.float32(0.7))  # 0.699999988...
    assert readable(f32) == 0.699999 and readable(f32) <= f32
