"""Training entry point and promotion rule (pipeline/distill/promote.py): held-out AP of a freshly trained
student, measured like `evaluate`, and "promote only if held-out AP beats the served one"."""
import json

import numpy as np
import pytest

from pipeline.distill.promote import held_out, promote, score, train_and_score
from pipeline.distill.train import TrainConfig
from tests.pipeline.distill.test_train import TINY


def test_held_out_reads_the_split_back_in_pixels(yolo_export):
    data, manifest, truth = yolo_export
    held = held_out(data, "val")
    val = [f for f in manifest["files"] if f["split"] == "val"]
    assert len(held) == len(val) > 0 and held.classes == manifest["classes"]
    for path, dets, f in zip(held.images, held.truth, val):
        assert path.name == f"{f['task_id']}.jpg"
        want = truth[f["task_id"]]
        assert dets.labels.tolist() == [lab for lab, _ in want]
        assert np.allclose(dets.xyxy, [b for _, b in want], atol=0.01)
    assert len(held_out(data, "nonesuch")) == 0


def test_train_and_score_adds_held_out_ap_to_the_run(yolo_export, tmp_path):
    data, manifest, _ = yolo_export
    held = held_out(data, "val")
    m = train_and_score(TrainConfig(data=data, out=tmp_path / "run", epochs=1, **TINY), held)
    h = m["held_out"]
    assert h["images"] == len(held) and set(h["labels"]) <= set(manifest["classes"])
    assert 0 <= h["ap50_95"] <= h["ap50"] <= 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["held_out"] == h
    assert score(tmp_path / "run" / m["weights"], held) == h  # the same images, the same figures
    assert promote(h, h) == (False, f"held-out ap50_95 {h['ap50_95']:.3f} does not beat the served "
                                    f"{h['ap50_95']:.3f}")


@pytest.mark.parametrize("candidate, served, ok, why", [
    ({"images": 10, "ap50_95": 0.5}, None, True, "nothing is served yet"),
    ({"images": 10, "ap50_95": 0.5}, {"images": 10, "ap50_95": 0.4}, True, "0.500 beats the served 0.400"),
    ({"images": 10, "ap50_95": 0.4}, {"images": 10, "ap50_95": 0.4}, False, "does not beat the served 0.400"),
    ({"images": 10, "ap50_95": 0.3}, {"images": 10, "ap50_95": 0.4}, False, "does not beat"),
    ({"images": 12, "ap50_95": 0.9}, {"images": 10, "ap50_95": 0.4}, False, "not comparable"),
    ({"images": 10, "ap50_95": None}, {"images": 10, "ap50_95": 0.4}, False, "no held-out ap50_95"),
    ({"images": 0, "ap50_95": None}, None, True, "nothing is served yet"),
])
def test_promote_only_when_held_out_ap_beats_the_served(candidate, served, ok, why):
    got, reason = promote(candidate, served)
    assert got is ok and why in reason


def test_promote_with_a_margin_and_another_metric():
    assert promote({"images": 5, "ap50_95": 0.42}, {"images": 5, "ap50_95": 0.4}, min_gain=0.05)[0] is False
    assert promote({"images": 5, "ap50_95": 0.46}, {"images": 5, "ap50_95": 0.4}, min_gain=0.05)[0] is True
    assert promote({"images": 5, "ap50": 0.9, "ap50_95": 0.1}, {"images": 5, "ap50": 0.8, "ap50_95": 0.5},
                   metric="ap50")[0] is True
