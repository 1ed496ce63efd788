import numpy as np
import pytest
from PIL import Image

from pipeline.config import Thresholds
from pipeline.detections import Detections
from pipeline.stages import ground
from tests.doubles.providers import ScriptedGrounder


def dets(rows):
    return Detections(xyxy=[r[0] for r in rows], scores=[r[1] for r in rows], labels=[r[2] for r in rows])


def test_nms_is_per_label_and_keeps_best():
    d = dets([([0, 0, 100, 100], 0.9, "a"), ([5, 5, 105, 105], 0.8, "a"),  # overlaps the first: dropped
              ([5, 5, 105, 105], 0.7, "b"),  # same place, other label: kept
              ([300, 300, 400, 400], 0.6, "a")])
    d.apply_nms(0.5)
    assert d.kept.tolist() == [True, False, True, True]
    assert d.stage[1] == "ground" and "nms" in d.reason[1]


def test_nms_without_scores_prefers_earlier_boxes():
    d = dets([([0, 0, 100, 100], np.nan, "a"), ([2, 2, 100, 100], np.nan, "a")])
    d.apply_nms(0.5)
    assert d.kept.tolist() == [True, False]


def test_drop_only_touches_kept_boxes_and_keeps_first_reason():
    d = dets([([0, 0, 10, 10], 0.9, "a"), ([0, 0, 10, 10], 0.1, "a")])
    d.drop([False, True], "ground", "low")
    d.drop([True, True], "verify", "no")
    assert d.reason.tolist() == ["no", "low"] and d.stage.tolist() == ["verify", "ground"]
    assert len(d.active()) == 0 and len(d) == 2


def test_final_score_prefers_verify():
    d = dets([([0, 0, 10, 10], 0.3, "a"), ([0, 0, 10, 10], np.nan, "a")])
    d.set_verify_scores([0, 1], [np.nan, 0.8])
    assert np.allclose(d.final_scores(), [0.3, 0.8])
    recs = d.records()
    assert recs[1]["grounding_score"] is None and recs[1]["score"] == pytest.approx(0.8)


def test_merge_keeps_order_and_drops():
    a, b = dets([([0, 0, 1, 1], 0.5, "a")]), dets([([2, 2, 3, 3], 0.6, "b")])
    m = Detections.merge([a, Detections.empty(), b])
    assert len(m) == 2 and m.labels.tolist() == ["a", "b"]
    m.drop([True, False], "verify", "x")
    assert m.active().labels.tolist() == ["b"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        Detections(xyxy=[[0, 0, 1, 1]], scores=[0.1, 0.2], labels=["a"])


def test_ground_stage_thresholds_mapping_clipping_and_cap():
    img = Image.new("RGB", (200, 100))
    g = ScriptedGrounder([
        ([-10, -10, 50, 50], 0.9, "stop sign"),      # clipped to the image
        ([10, 10, 60, 60], 0.05, "stop sign"),      # below grounding threshold
        ([120, 10, 190, 90], 0.8, "octagon"),
        ([121, 11, 190, 90], 0.7, "octagon"),       # NMS
        ([150, 50, 150.5, 60], 0.9, "octagon"),     # degenerate
        ([0, 60, 30, 99], 0.4, "stop sign"),        # beyond max_boxes=2
    ])
    th = Thresholds(grounding=0.1, nms_iou=0.5, max_boxes=2)
    d = ground(g, img, {"stop sign": "Stop Sign", "octagon": "Stop Sign"}, th)
    assert g.calls == [["stop sign", "octagon"]]
    kept = d.active()
    assert kept.labels.tolist() == ["Stop Sign", "Stop Sign"]
    assert kept.queries.tolist() == ["stop sign", "octagon"]
    assert kept.xyxy[0].tolist() == [0, 0, 50, 50]
    reasons = dict(zip(range(len(d)), d.reason))
    assert "grounding score" in reasons[1] and "nms" in reasons[3]
    assert "degenerate" in reasons[4] and "max_boxes" in reasons[5]
    # NMS merges across queries with the same label: the two octagon boxes share "Stop Sign"


def test_arrays_cannot_be_edited_from_outside():
    """A stage changes fates and scores through the methods; writing into the arrays fails loudly."""
    d = dets([([0, 0, 10, 10], 0.9, "a"), ([0, 0, 10, 10], 0.1, "a")])
    for name in ("kept", "xyxy", "scores", "labels", "verify_scores", "stage", "reason", "masks", "identities"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(d, name)[:] = getattr(d, name)[::-1]
    d.drop([False, True], "verify", "low")
    d.set_verify_scores([1], [0.2])
    assert d.kept.tolist() == [True, False] and np.isnan(d.verify_scores[0]) and d.verify_scores[1] == \
        pytest.approx(0.2)
    view = d.active()
    assert len(view) == 1 and d.kept.tolist() == [True, False]  # indexing makes a new object


def test_merge_and_indexing_keep_masks_identities_and_extra():
    a = Detections(xyxy=[[0, 0, 2, 2]], scores=[0.5], labels=["a"], masks=[np.ones((4, 4), bool)],
                   identities=["card-1"], extra={"region_id": ["r1"]})
    b = Detections(xyxy=[[1, 1, 3, 3]], scores=[0.6], labels=["b"])
    m = Detections.merge([a, b])
    assert m.extra["region_id"].tolist() == ["r1", None]
    assert m.identities.tolist() == ["card-1", None] and m.mask_areas().tolist() == [16, 0]
    assert m[[1, 0]].extra["region_id"].tolist() == [None, "r1"]
    assert m.records()[0]["region_id"] == "r1" and m.records()[0]["mask_pixels"] == 16
