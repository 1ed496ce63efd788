"""Zoom refinement (pipeline/providers/zoom.py): windows, the refit, and the student running it on its own path."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError, parse_project
from pipeline.detections import Detections
from pipeline.providers import zoom
from pipeline.providers.registry import _GROUNDER_FIELDS, _key
from pipeline.providers.student import StudentGrounder
from pipeline.tiny.student import whole_image_student

PHOTO = (1280, 960)


def _dets(boxes, labels, scores=None):
    return Detections(xyxy=np.asarray(boxes, np.float32), scores=scores or [0.9] * len(boxes), labels=labels)


def test_a_window_is_factor_times_the_longer_side_centred_and_kept_inside_the_photo():
    boxes = [[600, 400, 700, 450],  # 100 x 50: 400 px, centred on (650, 425)
             [10, 900, 60, 950],  # 50 px near the bottom-left corner: 256 px, shifted inside
             [600, 400, 620, 410],  # 20 px: the window's minimum side
             [300, 200, 600, 500]]  # 300 px: 1200 >= the shorter side, no window
    assert zoom.windows(np.array(boxes), PHOTO, factor=4, min_side=256) == [
        (450, 225, 400), (0, 704, 256), (482, 277, 256), (0, 0, 0)]


def test_a_box_moves_to_the_same_label_box_its_window_finds():
    seen = []

    def predict(crops):
        seen.extend(c.size for c in crops)
        # window of box 0 starts at (450, 225): its own box a little tighter, and a better overlapping other label
        return [_dets([[152, 177, 248, 223], [150, 175, 250, 225]], ["Stop", "Yield"])]

    image = Image.new("RGB", PHOTO)
    dets = _dets([[600, 400, 700, 450]], ["Stop"], [0.7])
    out = zoom.refine(image, dets, predict, factor=4, min_side=256, min_score=0.1)
    assert seen == [(400, 400)]
    assert out.xyxy.tolist() == [[602, 402, 698, 448]]  # the window's box, in photo pixels
    assert out.scores.tolist() == pytest.approx([0.7]) and out.labels.tolist() == ["Stop"]  # the detector's


def test_a_box_stays_when_its_window_finds_no_match_or_it_scores_under_min_score():
    calls = []

    def predict(crops):
        calls.append(len(crops))
        return [_dets([[0, 0, 30, 30]], ["Stop"]),  # far from the box: IoU < 0.5
                _dets([[152, 177, 248, 223]], ["Yield"])]  # another label

    image = Image.new("RGB", PHOTO)
    dets = _dets([[600, 400, 700, 450], [100, 100, 200, 150], [300, 300, 400, 350]], ["Stop", "Stop", "Stop"],
                 [0.9, 0.9, 0.05])
    out = zoom.refine(image, dets, predict, factor=4, min_side=256, min_score=0.1)
    assert calls == [2]  # one batch, the low-scored box not cropped
    assert out.xyxy.tolist() == dets.xyxy.tolist()
    assert zoom.refine(image, dets, predict, factor=0, min_side=256, min_score=0.1) is dets


def test_the_student_refits_on_windows_through_its_own_predict(tmp_path):
    """The whole-image student answers every window with a box covering it: a 50 x 40 box in its 60 px window
    (IoU 0.56) and an 80 x 60 box in its 96 px window (IoU 0.52) move to their windows, in photo pixels; the
    windows, of two sizes, go through the real ultralytics path in one batch."""
    weights = whole_image_student(tmp_path / "s.pt", ["Stop", "Yield"])
    student = StudentGrounder(str(weights), device="cpu", zoom=1.2)
    image = Image.new("RGB", (640, 480), (90, 120, 150))
    dets = _dets([[300, 200, 350, 240], [100, 100, 180, 160]], ["Stop", "Stop"])
    out = zoom.refine(image, dets, lambda crops: student._predict(crops, None), factor=1.2, min_side=60,
                      min_score=0.1)
    assert np.abs(out.xyxy - [[295, 190, 355, 250], [92, 82, 188, 178]]).max() <= 1.5
    assert student.describe()["zoom"] == 1.2
    # a photo whose only box is the whole picture: no window, the same answer as without zoom
    plain = StudentGrounder(str(weights), device="cpu").boxes(image)
    zoomed = student.boxes(image)
    assert zoomed.xyxy.tolist() == plain.xyxy.tolist() and len(zoomed)


def test_zoom_is_the_students_and_changes_the_fingerprint_only_when_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.pt").write_bytes(b"weights")
    base = {"project_name": "p", "target_object": "cat"}
    # values written before zoom existed (0a91546): a project without it predicts the same, keeps its version
    assert parse_project(base).fingerprint() == "b3a2068b53"
    student = {**base, "providers": {"grounder": {"kind": "student", "model": "s.pt"}}}
    assert parse_project(student).fingerprint() == "ffdc3f6777"
    routed = {**base, "route": {"student": "s.pt"}}
    assert parse_project(routed).fingerprint() == "071a5c7d8b"
    on = {**base, "providers": {"grounder": {"kind": "student", "model": "s.pt", "zoom": 4}}}
    assert parse_project(on).fingerprint() != "ffdc3f6777"
    assert parse_project({**base, "route": {"student": "s.pt", "zoom": 4}}).fingerprint() != "071a5c7d8b"
    assert parse_project({**base, "route": {"student": "s.pt", "zoom": 4}}).route.provider().zoom == 4
    grounder = parse_project(on).providers.grounder
    assert _key("grounder", grounder, _GROUNDER_FIELDS) != _key("grounder", grounder.model_copy(update={"zoom": 0}),
                                                                  _GROUNDER_FIELDS)  # a model of its own
    with pytest.raises(ConfigError, match="zoom refines the student's boxes; grounder kind 'owlv2' has none"):
        parse_project({**base, "providers": {"grounder": {"kind": "owlv2", "zoom": 4}}})
