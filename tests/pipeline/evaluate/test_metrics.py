"""pipeline/evaluate metrics, AP, calibration, lead times, --compare, suspects and the report files on
constructed data (no Label Studio): every figure checked against arithmetic done by hand here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.evaluate import ap, calibration, metrics, report_html
from pipeline.evaluate.matching import match_boxes
from pipeline.evaluate.report import evaluate_tasks
from pipeline.evaluate.suspects import find_suspects
from pipeline.evaluate.tasks import parse_task
from tests.pipeline.evaluate.test_matching import LAYOUT, TRUTH, dets

PRED = dets([[0, 0, 100, 100], [210, 0, 310, 100], [400, 0, 500, 100], [800, 0, 900, 100], [0, 0, 100, 100]],
            ["cat"] * 5, [0.9, 0.8, 0.7, 0.95, 0.3])  # kept, moved, relabeled, deleted, deleted (+ 1 added)


def test_box_counts_and_acceptance_by_hand():
    records = match_boxes(PRED, TRUTH)
    d = metrics.detection_counts(records)
    # cat: TP kept+moved = 2, FP the other 3 predictions; FN the added cat; dog: its box was relabeled -> FN 1
    assert {k: d["cat"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 3, "fn": 1}
    assert {k: d["dog"][k] for k in ("tp", "fp", "fn")} == {"tp": 0, "fp": 0, "fn": 1}
    assert d["dog"]["precision"] is None and d["dog"]["recall"] == 0
    a = d["all"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 3, 2)
    assert a["precision"] == pytest.approx(0.4) and a["recall"] == pytest.approx(0.5)
    assert a["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    acc = metrics.acceptance(records)
    assert acc["all"] == {"predicted": 5, "kept": 1, "moved": 1, "relabeled": 1, "deleted": 2, "added": 1,
                          "kept_share": 0.2, "moved_share": 0.2, "relabeled_share": 0.2, "deleted_share": 0.4}
    assert set(acc) == {"all", "cat"}  # shares are per predicted label; the dog was never predicted


def test_average_precision_by_hand():
    truth = dets([[0, 0, 10, 10], [20, 20, 30, 30]], ["a", "a"])
    pred = dets([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], ["a", "a", "a"], [0.9, 0.8, 0.7])
    # ranks: TP (P 1, R .5), FP (P .5), TP (P 2/3, R 1); COCO's 101 recall points: precision 1 up to R .5
    # (51 points), 2/3 after (50 points)
    out = ap.average_precision([(1, pred, truth), (2, dets([], []), dets([], []))])
    expected = (51 + 50 * 2 / 3) / 101
    assert out["labels"]["a"]["ap50"] == pytest.approx(expected)
    assert out["labels"]["a"]["ap50_95"] == pytest.approx(expected)  # exact boxes match at every IoU
    assert out["ap50"] == pytest.approx(expected) and len(out["labels"]["a"]["pr_curve"]) == 101
    curve = out["labels"]["a"]["pr_curve"]
    assert curve[50] == 1 and curve[51] == pytest.approx(2 / 3, abs=1e-4)
    only_fp = ap.average_precision([(1, dets([[0, 0, 5, 5]], ["b"], [0.5]), truth)])
    assert only_fp["labels"]["b"]["ap50"] is None and only_fp["labels"]["a"]["ap50"] == 0.0  # no box of b to find
    nothing = ap.average_precision([(1, dets([], []), truth)])
    assert nothing["labels"]["a"] == {"ap50": 0.0, "ap50_95": 0.0, "pr_curve": [0.0] * 101}


def test_calibration_by_hand():
    rel = calibration.reliability([0.95, 0.85, 0.15, 0.05], [True, True, False, True], bins=10)
    assert rel["ece"] == pytest.approx((0.05 + 0.15 + 0.15 + 0.95) / 4)
    assert rel["brier"] == pytest.approx((0.05 ** 2 + 0.15 ** 2 + 0.15 ** 2 + 0.95 ** 2) / 4)
    assert [b["boxes"] for b in rel["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    assert rel["bins"][0]["kept_share"] == 1.0 and rel["bins"][2]["mean_score"] is None
    assert calibration.histogram([0.0, 0.05, 0.5, 1.0, None], bins=4) == [2, 0, 1, 1]
    assert calibration.reliability([], [])["ece"] is None


def _task(tid, truth_boxes, pred_versions, lead=None, annotated_at="2026-01-01T10:00:00Z"):
    """truth_boxes / each version's boxes: [(x, label, score)] in percent of a 100x100 image."""
    def region(x, label, score=None):
        r = {"type": "rectanglelabels", "from_name": "label", "original_width": 100, "original_height": 100,
             "value": {"x": x, "y": 0, "width": 10, "height": 10, "rectanglelabels": [label]}}
        if score is not None:
            r["score"] = score
        return r
    return parse_task({"id": tid, "annotations": [
        {"id": tid, "result": [region(*b) for b in truth_boxes], "lead_time": lead, "created_at": annotated_at}],
        "predictions": [{"id": 100 * tid + i, "model_version": v, "result": [region(*b) for b in boxes],
                         "created_at": at} for i, (v, (boxes, at)) in enumerate(pred_versions.items())]}, LAYOUT)


BEFORE, AFTER = "2026-01-01T09:00:00Z", "2026-01-01T11:00:00Z"


def test_image_level_is_the_filter_stage():
    tasks = [_task(1, [(0, "cat")], {"v": ([(0, "cat", 0.9)], BEFORE)}),  # TP
             _task(2, [], {"v": ([(0, "cat", 0.9)], BEFORE)}),  # FP: nothing there, the model said yes
             _task(3, [(0, "dog")], {"v": ([], BEFORE)}),  # FN: the prediction has no box
             _task(4, [], {"v": ([], BEFORE)})]  # TN
    im = metrics.image_level(tasks, "v")
    assert {k: im["all"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert im["all"]["precision"] == 0.5 and im["all"]["recall"] == 0.5
    assert {k: im["dog"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 0, "fp": 0, "fn": 1, "tn": 0}


def test_lead_time_with_and_without_a_prediction_and_seconds_saved():
    tasks = [_task(1, [(0, "cat")], {"v1": ([(0, "cat", 0.9)], BEFORE)}, lead=30),
             _task(2, [(0, "cat")], {"v1": ([(0, "cat", 0.9)], BEFORE)}, lead=10),
             _task(3, [(0, "cat")], {"v1": ([(0, "cat", 0.9)], AFTER)}, lead=90),  # predicted after: not shown
             _task(4, [(0, "cat")], {}, lead=60),
             _task(5, [(0, "cat")], {}, lead=None)]  # no lead_time recorded: not timed
    report, _ = evaluate_tasks(tasks)
    assert report["time_without_prediction"] == {"tasks": 2, "median_seconds": 75.0}
    assert report["versions"]["v1"]["time"] == {"tasks": 2, "median_seconds": 20.0, "seconds_saved_per_task": 55.0}
    assert report["tasks"] == {"listed": 5, "reviewed": 5, "reviewed_without_prediction": 2, "skipped_regions": 0}


def _two_versions():
    a = [(0, "cat", 0.9), (40, "cat", 0.6)]  # v1: one right, one deleted
    b = [(0, "cat", 0.95), (80, "cat", 0.05)]  # v2: one right, one deleted
    return [_task(1, [(0, "cat")], {"v1": (a, BEFORE), "v2": (b, BEFORE)}, lead=20),
            _task(2, [(0, "cat"), (60, "cat")], {"v1": ([(60, "cat", 0.8)], BEFORE)}, lead=40),
            _task(3, [(0, "cat")], {"v2": ([(0, "cat", 0.7)], BEFORE)}, lead=30)]


def test_compare_uses_only_the_tasks_both_versions_predicted():
    report, records = evaluate_tasks(_two_versions(), compare=("v1", "v2"))
    assert set(report["versions"]) == {"v1", "v2"} and set(records) == {"v1", "v2"}
    assert report["versions"]["v1"]["tasks"] == 2 and report["versions"]["v2"]["tasks"] == 2
    c = report["compare"]
    assert (c["a"], c["b"], c["tasks"]) == ("v1", "v2", 1)  # only task 1 has both
    rows = {r["metric"]: r for r in c["rows"]}
    assert rows["box precision"]["a"] == 0.5 and rows["box precision"]["b"] == 0.5
    assert rows["box precision"]["delta"] == 0
    assert rows["ECE of score as P(kept) (lower is better)"]["a"] == pytest.approx((0.1 + 0.6) / 2)
    assert rows["ECE of score as P(kept) (lower is better)"]["b"] == pytest.approx((0.05 + 0.05) / 2)
    assert rows["ECE of score as P(kept) (lower is better)"]["delta"] == pytest.approx(0.05 - 0.35)
    assert rows["ECE of score as P(kept) (lower is better)"]["better"] == "b"  # lower ECE
    assert rows["box precision"]["better"] is None and rows["reviewed tasks"]["better"] is None
    with pytest.raises(ValueError, match="'v9'"):
        evaluate_tasks(_two_versions(), compare=("v1", "v9"))
    only, _ = evaluate_tasks(_two_versions(), versions=["v2"])
    assert list(only["versions"]) == ["v2"]


def test_suspects_are_confident_deletions_and_doubted_keeps():
    report, records = evaluate_tasks(_two_versions())
    s = find_suspects([r for rs in records.values() for r in rs], url="http://127.0.0.1:8080/", project_id=4,
                      confident=0.6, doubtful=0.1)
    assert [(x["task"], x["model_version"], x["kind"], x["score"]) for x in s] == [
        (1, "v1", "deleted a confident box", 0.6)]
    assert s[0]["link"] == "http://127.0.0.1:8080/projects/4/data?task=1"
    low = _task(9, [(0, "a")], {"v": ([(0, "a", 0.02)], BEFORE)})
    _, recs = evaluate_tasks([low])
    (kept,) = find_suspects(recs["v"], url="http://h", project_id=1, confident=0.9, doubtful=0.05)
    assert kept["kind"] == "kept a doubted box" and kept["strength"] == pytest.approx(0.98)


def test_report_json_and_html_are_self_contained_and_escaped():
    tasks = _two_versions() + [_task(4, [(0, "<b>x</b>")], {"v1": ([(0, "<b>x</b>", 0.9)], BEFORE)}, lead=5)]
    report, records = evaluate_tasks(tasks, compare=("v1", "v2"))
    report["project"] = {"id": 3, "title": "Signs & <friends>", "url": "http://127.0.0.1:8080/projects/3"}
    report["suspects"] = find_suspects(records["v1"], url="http://127.0.0.1:8080", project_id=3, confident=0.5)
    json.loads(json.dumps(report))  # plain JSON
    page = report_html.render(report)
    assert page.count("<svg") >= 5  # version bars, acceptance, time, a PR curve, reliability, histograms
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "Signs &amp; &lt;friends&gt;" in page
    assert 'href="http://127.0.0.1:8080/projects/3/data?task=1"' in page
    srcs = [s for s in page.split("xlink:href=")[1:] if not s.startswith(('"#', "'#"))]
    assert srcs == []  # SVGs reference only their own glyphs
    assert np.isfinite(report["versions"]["v1"]["scores"]["reliability"]["ece"])


def test_figures_for_people():
    from pipeline.evaluate.report import fmt, fmt_delta
    assert [fmt(1234, "int"), fmt(0.1234, "pct"), fmt(4.56, "sec"), fmt(0.12345), fmt(None)] == [
        "1,234", "12.3%", "4.6 s", "0.123", "–"]
    assert [fmt_delta(0.5, 0.6, "pct"), fmt_delta(3, 1, "int"), fmt_delta(0.1, 0.05, "num"), fmt_delta(None, 1, "int")
            ] == ["+10.0 pt", "-2", "-0.050", "–"]


def test_ap_on_boxes_as_stored_is_pycocotools_and_clipped_ap_is_reported_beside_it():
    """A prediction stored reaching past the image's right edge: clipped to the image it is the annotated box
    (IoU 1); as stored (what pycocotools evaluates in a COCO export) its IoU is 0.5. Both APs are reported;
    the stored one equals pycocotools' AP@[.5:.95] on the same boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from tests.pipeline.evaluate.test_matching import _region
    tasks = [parse_task({"id": 1, "annotations": [{"id": 1, "result": [_region(90, "cat", w=10)]}],
                         "predictions": [{"id": 1, "model_version": "v", "result": [_region(90, "cat", 0.9, w=20)]}]},
                        LAYOUT),
             parse_task({"id": 2, "annotations": [{"id": 2, "result": [_region(10, "cat")]}],
                         "predictions": [{"id": 2, "model_version": "v", "result": [_region(11, "cat", 0.8)]}]},
                        LAYOUT)]
    row = metrics.version_metrics(tasks, "v", [r for t in tasks for r in match_boxes(
        t.predictions["v"].boxes, t.truth.boxes, task_id=t.id)])["detection"]["all"]
    gt = COCO()
    # 200 x 100 px images; regions y 10 %, height 20 % -> y 10, h 20 px
    gt.dataset = {"images": [{"id": 1, "width": 200, "height": 100}, {"id": 2, "width": 200, "height": 100}],
                  "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [180, 10, 20, 20], "area": 400,
                                   "iscrowd": 0},
                                  {"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 10, 40, 20], "area": 800,
                                   "iscrowd": 0}],
                  "categories": [{"id": 1, "name": "cat"}]}
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [180, 10, 40, 20], "score": 0.9},
                                  {"image_id": 2, "category_id": 1, "bbox": [22, 10, 40, 20], "score": 0.8}]), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert row["ap50_95_as_stored"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert row["ap50_as_stored"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert row["ap50_95"] > row["ap50_95_as_stored"] + 0.1  # clipped, task 1's box matches at every IoU
