"""OWLv2 "find similar" (image-conditioned detection inside one image) with the tiny OWLv2 loaded
through the grounder's real path, and the stage that turns it into labelled, thresholded boxes."""
import numpy as np
import pytest
import supervision as sv
from PIL import Image

from pipeline.config import GrounderProvider, Thresholds
from pipeline.providers.hf_detectors import OWLv2Grounder
from pipeline.stages import similar

W, H = 200, 120


@pytest.fixture(scope="module")
def owl(tiny_owlv2_dir):
    return OWLv2Grounder.from_config(GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir), device="cpu"))


def scene():
    im = Image.new("RGB", (W, H), (30, 90, 160))
    im.paste((220, 20, 20), (20, 20, 60, 60))
    im.paste((220, 20, 20), (120, 50, 160, 90))
    return im


def test_every_proposal_scored_against_the_example(owl):
    assert owl.finds_similar
    d = owl.similar(scene(), [20, 20, 60, 60])
    n = owl.model.num_patches_height * owl.model.num_patches_width
    assert len(d) == n  # one proposal per patch of the tiny model's grid
    assert ((d.scores >= 0) & (d.scores <= 1)).all()
    assert (d.xyxy[:, 0] >= 0).all() and (d.xyxy[:, 2] <= W).all() and (d.xyxy[:, 3] <= H).all()
    # the query is the class embedding of the proposal that overlaps the example most: scoring the
    # proposals with the model's own class head against that embedding gives these scores
    again = owl.similar(scene(), [20, 20, 60, 60])
    assert np.allclose(again.scores, d.scores)
    other = owl.similar(scene(), [120, 50, 160, 90])
    assert not np.allclose(other.scores, d.scores)  # another example, another query


def test_stage_labels_thresholds_and_leaves_the_example_out(owl):
    th = Thresholds(grounding=0.0, nms_iou=0.5, max_boxes=5)
    example = [20, 20, 60, 60]
    d = similar(owl, scene(), example, "Stop Sign", th)
    kept = d.active()
    assert 0 < len(kept) <= 5 and set(kept.labels) == {"Stop Sign"} and set(kept.stage) == {"similar"}
    assert (sv.box_iou_batch(kept.xyxy, np.array([example], np.float32)) <= 0.5).all()
    strict = similar(owl, scene(), example, "Stop Sign", Thresholds(grounding=1.0))
    assert len(strict.active()) == 0
