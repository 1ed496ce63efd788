"""The simulated cascade (pipeline/synthetic/teacher.py): repeatable, and its rates are the ones it states."""
import numpy as np
import pytest
import supervision as sv

from pipeline.config import Thresholds
from pipeline.detections import Detections
from pipeline.synthetic.project import truth_detections, truth_record
from pipeline.synthetic.teacher import CascadeAnswer, Teacher
from pipeline.synthetic.world import World


@pytest.fixture(scope="module")
def records():
    world = World(2, size=(320, 240))
    return [truth_record(str(i), world, world.scene(i)) for i in range(150)]


def test_same_image_same_answer(records):
    t = Teacher(seed=3)
    a, b = t.answer(records[5]), t.answer(records[5])
    assert a.filter_p == b.filter_p and np.array_equal(a.candidates.xyxy, b.candidates.xyxy)
    assert np.array_equal(a.candidates.verify_scores, b.candidates.verify_scores)
    assert t.verify_p(records[5], [10, 10, 50, 50], "Drone") == t.verify_p(records[5], [10, 10, 50, 50], "Drone")
    assert Teacher(seed=4).answer(records[5]).filter_p != a.filter_p


def test_rates_are_the_stated_ones(records):
    t = Teacher(miss=0.2, jitter=0.04, confusion=0.0, lookalike_rate=0.0, false_per_image=0.0)
    found, truths, ious, right_p, wrong_p = 0, 0, [], [], []
    for r in records:
        truth = truth_detections(r)
        c = t.answer(r).candidates
        truths += len(truth)
        found += len(c)
        if len(c) and len(truth):
            ious += sv.box_iou_batch(c.xyxy, truth.xyxy).max(axis=1).tolist()
        right_p += [t.verify_p(r, b, lab) for b, lab in zip(truth.xyxy, truth.labels)]
        wrong_p += [t.verify_p(r, [0, 0, 5, 5], "Drone") for _ in range(1)]
    assert truths > 150
    assert found / truths == pytest.approx(0.8, abs=0.06)
    assert 0.8 < np.median(ious) < 0.95  # 4 % of a side per edge
    assert np.mean(right_p) == pytest.approx(8 / 9.5, abs=0.04)  # Beta(8, 1.5)
    assert np.mean(wrong_p) == pytest.approx(1.5 / 5.5, abs=0.06)  # Beta(1.5, 4)


def test_look_alikes_and_false_boxes_are_added(records):
    quiet = Teacher(miss=0.0, lookalike_rate=0.0, false_per_image=0.0)
    noisy = Teacher(miss=0.0, lookalike_rate=1.0, false_per_image=1.0)
    lookalikes = sum(len(r["lookalikes"]) for r in records)
    extra = sum(len(noisy.answer(r).candidates) - len(quiet.answer(r).candidates) for r in records)
    assert lookalikes > 50 and extra == pytest.approx(lookalikes + len(records), rel=0.2)


def test_what_the_cascade_keeps_and_the_calls_it_makes():
    cand = Detections(xyxy=[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], scores=[np.nan] * 3,
                      labels=["A", "A", "B"], verify_scores=[0.9, 0.4, 0.6])
    a = CascadeAnswer(0.7, cand)
    kept = a.kept(Thresholds(filter=0.5, verify=0.5))
    assert kept.labels.tolist() == ["A", "B"] and kept.scores.tolist() == pytest.approx([0.9, 0.6])
    assert a.calls(Thresholds(filter=0.5)) == {"filter": 1, "ground": 1, "verify": 3}
    per_label = Thresholds(filter=0.5, verify=0.5, per_label={"B": {"verify": 0.7}})
    assert a.kept(per_label).labels.tolist() == ["A"]
    closed = Thresholds(filter=0.8, verify=0.5)
    assert len(a.kept(closed)) == 0 and a.calls(closed) == {"filter": 1, "ground": 0, "verify": 0}
