"""The simulated annotator (pipeline/synthetic/annotator.py) on constructed cases, seconds worked out by hand."""
import math

import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.synthetic.annotator import Costs, review

NAN = math.nan


def dets(rows, scores=None, kept=None):
    return Detections(xyxy=np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
                      scores=scores if scores is not None else [NAN] * len(rows), labels=[r[1] for r in rows],
                      kept=kept)


TRUTH = dets([([0, 0, 100, 100], "A"), ([200, 0, 300, 100], "B"), ([400, 0, 500, 100], "A"),
              ([900, 0, 1000, 100], "B")])


def test_each_action_and_its_cost():
    """kept (IoU 1): 1.6; moved (IoU 100x100 / 100x120 = 0.83 < 0.9): 7.0; relabeled (B on A's box, IoU 1): 3.2;
    deleted (nothing at 700): 1.6; drawn (B at 900): 7.0; plus 1.6 to look at the image: 22.0 s.
    Drawing everything: 1.6 + 4 x 7.0 = 29.6 s."""
    pred = dets([([0, 0, 100, 100], "A"), ([200, 0, 300, 120], "B"), ([400, 0, 500, 100], "B"),
                 ([700, 0, 800, 100], "A")], scores=[0.9, 0.8, 0.7, 0.6])
    r = review(pred, TRUTH)
    assert r.counts == {"kept": 1, "moved": 1, "relabeled": 1, "deleted": 1, "added": 1}
    assert r.seconds == pytest.approx(22.0) and r.from_scratch == pytest.approx(29.6)
    assert r.share == pytest.approx(22.0 / 29.6)
    a = r.annotation
    assert a.labels.tolist() == ["A", "B", "A", "B"]  # every true box once, with its true label
    assert a.xyxy.tolist() == [[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100], [900, 0, 1000, 100]]


def test_a_kept_box_keeps_its_predicted_corners_and_a_loose_relabel_is_moved_too():
    """Kept at IoU 0.9 (90x100 inside 100x100): its own corners stay. Relabeled at IoU 0.5 (100x100 box shifted
    by a third): relabel 3.2 + move 7.0."""
    truth = dets([([0, 0, 100, 100], "A"), ([400, 0, 500, 100], "A")])
    pred = dets([([0, 0, 90, 100], "A"), ([433, 0, 533, 100], "B")], scores=[0.9, 0.8])
    r = review(pred, truth)
    assert r.counts["kept"] == 1 and r.counts["relabeled"] == 1
    assert r.annotation.xyxy.tolist()[0] == [0, 0, 90, 100]
    assert r.seconds == pytest.approx(1.6 + 1.6 + 3.2 + 7.0)


def test_nothing_predicted_is_drawing_everything_and_dropped_boxes_are_not_shown():
    r = review(Detections.empty(), TRUTH)
    assert r.seconds == r.from_scratch == pytest.approx(29.6) and r.counts["added"] == 4
    hidden = dets([([0, 0, 100, 100], "A")], scores=[0.9], kept=[False])  # dropped by a stage: not in Label Studio
    assert review(hidden, TRUTH).seconds == pytest.approx(29.6)
    empty = review(Detections.empty(), Detections.empty())
    assert empty.seconds == empty.from_scratch == pytest.approx(1.6) and empty.share == 1.0


def test_costs_are_settings():
    costs = Costs(verify=2.0, draw=25.5, image=0.0)
    pred = dets([([0, 0, 100, 100], "A")], scores=[0.9])
    r = review(pred, TRUTH, costs)
    assert r.seconds == pytest.approx(2.0 + 3 * 25.5) and r.from_scratch == pytest.approx(4 * 25.5)
