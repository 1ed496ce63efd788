"""pipeline/evaluate/matching.py and tasks.py on constructed boxes (no Label Studio): every outcome, the
greedy score order, the IoU boundaries, and agreement with faster-coco-eval's own matching."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.evaluate.matching import match_boxes, match_version
from pipeline.evaluate.tasks import parse_task
from pipeline.labelstudio.truth import layout_of
from tests.doubles import regions as regions_

LAYOUT = layout_of('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
                   '<Label value="cat"/><Label value="dog"/></RectangleLabels></View>')


def dets(boxes, labels, scores=None) -> Detections:
    scores = [np.nan] * len(boxes) if scores is None else scores
    return Detections(xyxy=np.asarray(boxes, np.float32).reshape(-1, 4), scores=scores, labels=labels)


TRUTH = dets([[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100], [600, 0, 700, 100]],
             ["cat", "cat", "dog", "cat"])


def outcomes(records):
    return [(r.outcome, r.label, r.truth_label, r.pred_index, r.truth_index) for r in records]


def test_every_outcome_and_the_added_box():
    pred = dets([[0, 0, 100, 100],  # kept (IoU 1)
                 [210, 0, 310, 100],  # moved: IoU 9000/11000 = 0.818
                 [400, 0, 500, 100],  # on the dog, labelled cat: relabeled
                 [800, 0, 900, 100],  # on nothing: deleted, though the most confident
                 [0, 0, 100, 100]],  # a duplicate of the first, whose annotated box is taken: deleted
                ["cat", "cat", "cat", "cat", "cat"], [0.9, 0.8, 0.7, 0.95, 0.3])
    records = match_boxes(pred, TRUTH, task_id=7, model_version="v1")
    assert outcomes(records) == [("kept", "cat", "cat", 0, 0), ("moved", "cat", "cat", 1, 1),
                                 ("relabeled", "cat", "dog", 2, 2), ("deleted", "cat", None, 3, None),
                                 ("deleted", "cat", None, 4, None), ("added", "cat", "cat", None, 3)]
    assert [r.iou for r in records] == [1.0, pytest.approx(9000 / 11000, abs=1e-6), 1.0, 0.0, 0.0, 0.0]
    assert [r.score for r in records] == [0.9, 0.8, 0.7, 0.95, 0.3, None]
    assert {(r.task_id, r.model_version) for r in records} == {(7, "v1")}
    assert [r.true_positive for r in records] == [True, True, False, False, False, False]


def test_higher_score_takes_the_box_first():
    pred = dets([[0, 0, 100, 100], [0, 0, 100, 95]], ["cat", "cat"], [0.2, 0.6])  # the second is more confident
    a, b = match_boxes(pred, TRUTH)[:2]
    assert (a.outcome, b.outcome) == ("deleted", "kept") and b.iou == pytest.approx(0.95)
    unscored = dets([[0, 0, 100, 100], [0, 0, 100, 95]], ["cat", "cat"])  # no scores: stored order decides
    assert [r.outcome for r in match_boxes(unscored, TRUTH)[:2]] == ["kept", "deleted"]


def test_iou_boundaries_are_inclusive_and_configurable():
    truth = dets([[0, 0, 100, 100]], ["cat"])
    at = {iou: dets([[0, 0, 100 * iou, 100]], ["cat"], [0.5]) for iou in (0.9, 0.5, 0.49)}
    assert match_boxes(at[0.9], truth)[0].outcome == "kept"  # IoU exactly 0.9 (0.8999999762 in float32)
    assert match_boxes(at[0.5], truth)[0].outcome == "moved"  # exactly 0.5
    assert [r.outcome for r in match_boxes(at[0.49], truth)] == ["deleted", "added"]
    assert match_boxes(at[0.49], truth, match_iou=0.3, keep_iou=0.45)[0].outcome == "kept"
    with pytest.raises(ValueError, match="match IoU"):
        match_boxes(at[0.5], truth, match_iou=0.9, keep_iou=0.5)


def test_empty_sides():
    assert [r.outcome for r in match_boxes(dets([], []), TRUTH)] == ["added"] * 4
    assert [r.outcome for r in match_boxes(TRUTH, dets([], []))] == ["deleted"] * 4
    assert match_boxes(dets([], []), dets([], [])) == []


def test_true_positives_agree_with_faster_coco_eval():
    """kept + moved per label == the detections COCO itself matches at IoU 0.5, on a random constructed set."""
    from faster_coco_eval import COCO, COCOeval_faster

    rng = np.random.default_rng(3)
    images, gts, dts, ours = [], [], [], 0
    for image_id in range(1, 41):
        n_t, n_p = rng.integers(0, 4), rng.integers(0, 5)
        t_xy = rng.uniform(0, 60, (n_t, 2))
        truth = dets(np.c_[t_xy, t_xy + rng.uniform(10, 40, (n_t, 2))], rng.choice(["a", "b"], n_t))
        base = truth.xyxy[rng.integers(0, max(n_t, 1), n_p)] if n_t else rng.uniform(0, 60, (n_p, 4))
        p_xy = base[:, :2] + rng.normal(0, 4, (n_p, 2))
        pred = dets(np.c_[p_xy, p_xy + np.maximum(base[:, 2:] - base[:, :2], 5) + rng.normal(0, 4, (n_p, 2))],
                    rng.choice(["a", "b"], n_p), rng.uniform(0, 1, n_p).round(3))
        ours += sum(r.true_positive for r in match_boxes(pred, truth))
        images.append({"id": image_id, "width": 200, "height": 200})
        for xyxy, lab in zip(truth.xyxy.tolist(), truth.labels):
            gts.append({"id": len(gts) + 1, "image_id": image_id, "category_id": 1 + (lab == "b"), "iscrowd": 0,
                        "bbox": [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]],
                        "area": (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])})
        for xyxy, lab, s in zip(pred.xyxy.tolist(), pred.labels, pred.scores.tolist()):
            dts.append({"image_id": image_id, "category_id": 1 + (lab == "b"), "score": s,
                        "bbox": [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    gt.createIndex()
    ev = COCOeval_faster(gt, gt.loadRes(dts), iouType="bbox", extra_calc=True, print_function=lambda *a: None)
    ev.params.iouThrs = np.array([0.5])
    ev.evaluate()
    ev.accumulate()
    assert ours > 10 and len(ev.eval["matched"]) == ours


def _region(x, label, score=None, rid="r", w=20, rotation=0, size=(200, 100)):
    return regions_.region("rect", {"x": x, "y": 10, "width": w, "height": 20, "rotation": rotation}, label,
                           rid=rid, size=size, score=score)


def test_parse_task_takes_the_latest_submitted_annotation_and_prediction_per_version():
    task = {"id": 5, "annotations": [
        {"id": 1, "result": [_region(10, "cat")], "lead_time": 11.0, "created_at": "2026-01-01T10:00:00Z",
         "updated_at": "2026-01-01T10:00:00Z", "was_cancelled": False},
        {"id": 2, "result": [_region(50, "dog"), _region(10, "cat", rotation=30),
                             {"type": "textarea", "from_name": "name", "value": {"text": ["x"]}},
                             _region(70, "cat", size=None)],
         "lead_time": 22.0, "created_at": "2026-01-01T11:00:00Z", "updated_at": "2026-01-02T09:00:00Z"},
        {"id": 3, "result": [], "lead_time": 5.0, "created_at": "2026-01-03T00:00:00Z", "was_cancelled": True}],
        "predictions": [
            {"id": 8, "model_version": "v1", "result": [_region(10, "cat", 0.4)], "created_at": "2026-01-01T08:00:00Z"},
            {"id": 9, "model_version": "v1", "result": [_region(12, "cat", 0.7)], "score": 0.7,
             "created_at": "2026-01-01T12:00:00Z"},
            {"id": 10, "model_version": "v2", "result": [_region(12, "cat", rid="x", size=None)],
             "created_at": "2026-01-01T09:00:00Z"}, 4]}  # a plain export lists some predictions by id
    t = parse_task(task, LAYOUT)
    assert t.truth.id == 2 and t.truth.lead_time == 22.0  # the cancelled one is later but not submitted
    assert list(t.truth.boxes.labels) == ["dog", "cat", "cat"] and t.skipped_regions == 0
    # in pixels; the rotated one (30 degrees about its top-left corner) as its enclosing box; the region with
    # no size of its own takes the 200 x 100 the task's other regions recorded
    np.testing.assert_allclose(t.truth.boxes.xyxy, [[100, 10, 140, 30], [10, 10, 20 + 40 * np.cos(np.pi / 6),
                                                                          30 + 20 * np.cos(np.pi / 6)],
                                                    [140, 10, 180, 30]], atol=1e-4)
    assert set(t.predictions) == {"v1", "v2"} and t.predictions["v1"].id == 9 and t.predictions["v1"].score == 0.7
    assert t.predictions["v1"].boxes.scores[0] == pytest.approx(0.7) and np.isnan(t.predictions["v2"].boxes.scores[0])
    assert not t.shown("v1") and t.shown("v2")  # v1's latest came after the annotation was submitted
    only = parse_task({"id": 6, "annotations": [{"id": 1, "was_cancelled": True, "result": []}], "predictions": []},
                      LAYOUT)
    assert only.truth is None
    other_control = parse_task(task, layout_of('<View><Image name="image" value="$image"/><RectangleLabels '
                                               'name="other" toName="image"><Label value="cat"/></RectangleLabels>'
                                               '</View>'))
    assert len(other_control.truth.boxes) == 0


def test_match_version_skips_unreviewed_and_unpredicted_tasks():
    reviewed = parse_task({"id": 1, "annotations": [{"id": 1, "result": [_region(10, "cat")]}],
                           "predictions": [{"id": 1, "model_version": "v1", "result": [_region(10, "cat", 0.9)]}]},
                          LAYOUT)
    unreviewed = parse_task({"id": 2, "annotations": [],
                             "predictions": [{"id": 2, "model_version": "v1", "result": [_region(10, "cat", 0.9)]}]},
                            LAYOUT)
    other = parse_task({"id": 3, "annotations": [{"id": 3, "result": [_region(10, "cat")]}],
                        "predictions": [{"id": 3, "model_version": "v2", "result": []}]}, LAYOUT)
    records = list(match_version([reviewed, unreviewed, other], "v1"))
    assert [(r.task_id, r.outcome) for r in records] == [(1, "kept")]


def test_a_prediction_without_image_size_is_measured_in_the_annotations():
    """Predictions imported from other tools carry no original_width/height: the same box in percent must
    match the annotation's box in pixels (before: compared in a 100 x 100 frame, TP 0, FP 1, AP 0)."""
    from pipeline.evaluate import metrics
    task = {"id": 7, "annotations": [{"id": 1, "result": [_region(10, "cat")]}],
            "predictions": [{"id": 2, "model_version": "imported", "result": [_region(10, "cat", 0.8, size=None)]}]}
    t = parse_task(task, LAYOUT)
    np.testing.assert_allclose(t.predictions["imported"].boxes.xyxy, t.truth.boxes.xyxy)
    records = list(match_version([t], "imported"))
    assert [(r.outcome, r.iou) for r in records] == [("kept", 1.0)]
    row = metrics.version_metrics([t], "imported", records)["detection"]["all"]
    assert (row["tp"], row["fp"], row["fn"], row["ap50"]) == (1, 0, 0, 1.0)
    nobody = parse_task({**task, "annotations": [{"id": 1, "result": [_region(10, "cat", size=None)]}]}, LAYOUT)
    np.testing.assert_allclose(nobody.truth.boxes.xyxy, [[10, 10, 30, 30]])  # no size anywhere: percent


def test_parse_task_skips_a_box_with_less_than_a_pixel_inside_the_image():
    """A sliver of a box (0.1 % of a 200 px wide image) is skipped and counted, not fatal to the run."""
    task = {"id": 6, "annotations": [{"id": 1, "result": [_region(10, "cat"), _region(50, "cat", w=0.1)],
                                      "created_at": "2026-01-01T10:00:00Z"}],
            "predictions": [{"id": 2, "model_version": "v1", "result": [_region(120, "cat", 0.5, w=0.1)]}]}
    t = parse_task(task, LAYOUT)
    assert list(t.truth.boxes.labels) == ["cat"] and len(t.predictions["v1"].boxes) == 0
    assert t.skipped_regions == 2
