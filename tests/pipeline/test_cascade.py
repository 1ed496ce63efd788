import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM, red_fraction


def scene():
    im = Image.new("RGB", (320, 240), (200, 200, 200))
    d = ImageDraw.Draw(im)
    d.rectangle((20, 40, 120, 140), fill=(220, 20, 20))   # the red "stop sign"
    d.rectangle((180, 80, 290, 190), fill=(20, 20, 220))  # a blue distractor
    return im


def config(**over):
    base = {"project_name": "t", "target_object": "stop sign", "label": "Stop Sign",
            "providers": {"vlm": {"kind": "transformers", "model": "x"}, "grounder": {"kind": "owlv2", "model": "y"}}}
    base.update(over)
    return parse_project(base)


BOXES = [([20, 40, 120, 140], 0.6, "stop sign"), ([180, 80, 290, 190], 0.5, "stop sign")]


def seeing_red(image, question):
    return min(1.0, red_fraction(image) * 4)


def test_cascade_filter_ground_verify():
    vlm, g = ScriptedVLM(seeing_red), ScriptedGrounder(BOXES)
    res = Pipeline(config(), vlm=vlm, grounder=g).run(scene())
    assert res.passed_filter and 0 < res.filter_answer.p_yes < 1
    d = res.detections
    assert d.kept.tolist() == [True, False]
    assert d.stage.tolist() == ["verify", "verify"] and "verify P(yes)" in d.reason[1]
    assert d.verify_scores[0] > 0.5 and d.verify_scores[1] == 0
    assert set(res.timings) == {"filter", "ground", "verify"}
    # verify asked once, batched, with the configured question
    assert vlm.batches == [2]
    assert vlm.calls[-1][1] == "Is this a stop sign? Answer YES or NO."
    rec = res.to_record()
    assert rec["detections"][0]["score"] == pytest.approx(d.verify_scores[0])
    assert len(rec["verify_answers"]) == 2


def test_filter_rejects_and_grounder_never_runs():
    vlm, g = ScriptedVLM(lambda im, q: 0.2), ScriptedGrounder(BOXES)
    res = Pipeline(config(), vlm=vlm, grounder=g).run(scene())
    assert not res.passed_filter and len(res.detections) == 0
    assert g.calls == [] and "P(yes)=0.200 < 0.5" in res.note


def test_stages_can_be_switched_off():
    vlm, g = ScriptedVLM(lambda im, q: 0.0), ScriptedGrounder(BOXES)
    res = Pipeline(config(stages={"filter": False, "verify": False}), vlm=vlm, grounder=g).run(scene())
    assert vlm.calls == [] and res.detections.kept.all()
    assert np.allclose(res.detections.final_scores(), [0.6, 0.5])


def test_verify_crop_padding_reaches_the_vlm():
    sizes = []
    vlm = ScriptedVLM(lambda im, q: sizes.append(im.size) or 1.0)
    cfg = config(stages={"filter": False}, thresholds={"crop_padding": 0.5})
    Pipeline(cfg, vlm=vlm, grounder=ScriptedGrounder(BOXES[:1])).run(scene())
    assert sizes == [(170, 190)]  # x -30..170 -> 0..170, y -10..190 -> 0..190: clamped at the border
