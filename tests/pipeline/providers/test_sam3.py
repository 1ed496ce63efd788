"""SAM 3 as a grounder kind: the tiny random SAM 3 built from its config, loaded through the registry
(text prompt -> boxes with scores, and masks from ``segment``), one vision pass for all queries."""
import numpy as np
import pytest
from PIL import Image

from pipeline.config import GrounderProvider, Thresholds
from pipeline.providers import registry
from pipeline.stages import ground

W, H = 300, 200


@pytest.fixture(scope="module")
def sam3(tiny_sam3_dir):
    registry.providers.clear()
    g = registry.get_grounder(GrounderProvider(kind="sam3", model=str(tiny_sam3_dir), device="cpu"))
    yield g
    registry.providers.clear()


def test_boxes_and_masks_per_query(sam3, monkeypatch):
    assert sam3.gives_masks and sam3.describe()["name"] == "sam3"
    image = Image.new("RGB", (W, H), (200, 30, 30))
    passes = []
    real = sam3.model.get_vision_features
    monkeypatch.setattr(sam3.model, "get_vision_features", lambda pv: passes.append(1) or real(pv))
    d = sam3.boxes(image, ["stop sign", "red circle"])
    assert passes == [1]  # the image is encoded once for both queries
    assert len(d) == 20 and set(d.queries) == {"stop sign", "red circle"}  # 10 object queries each
    assert ((d.scores >= 0) & (d.scores <= 1)).all() and not d.has_mask().any()
    assert (d.xyxy[:, 2] <= W + 1e-3).all() and (d.xyxy[:, 3] <= H + 1e-3).all()
    s = sam3.segment(image, ["stop sign"])
    assert len(s) == 10 and np.allclose(s.xyxy, d.xyxy[d.queries == "stop sign"], atol=1e-4)
    assert all(m is not None and m["size"] == [H, W] for m in s.masks)


def test_in_the_ground_stage_with_masks(sam3):
    d = ground(sam3, Image.new("RGB", (W, H), (30, 30, 200)), {"stop sign": "Stop Sign"},
               Thresholds(grounding=0.0, max_boxes=3), masks=True)
    kept = d.active()
    assert 1 <= len(kept) <= 3 and set(kept.labels) == {"Stop Sign"} and len(kept.masks) == len(kept)
