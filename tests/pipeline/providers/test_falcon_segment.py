"""Falcon's segmentation task: the tiny segmenting Falcon through the package's real MLX loader and
engine, and the pairing of its masks with its boxes on constructed masks."""
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from pipeline.config import GrounderProvider
from pipeline.providers.falcon import FalconGrounder, pair_masks
from pipeline.tiny.falcon import use_tiny_model_args


def rle(mask):
    r = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def square(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def test_masks_pair_in_order_and_come_back_at_the_image_size():
    # masks at the resized input's size (50 x 100) for a 200 x 100 image: twice as large
    masks = [rle(square(50, 100, 0, 0, 10, 10)), rle(square(50, 100, 50, 25, 100, 50))]
    out = pair_masks(masks, [[0, 0, 20, 20], [100, 50, 200, 100]], 200, 100)
    assert [m.shape for m in out] == [(100, 200)] * 2
    assert out[0].sum() == 400 and out[1].sum() == 100 * 50 and out[1][60, 150]


def test_a_skipped_mask_does_not_shift_the_others():
    """The package leaves an empty mask out: pairing by order would give box 0 the mask of box 1."""
    masks = [rle(square(100, 200, 100, 50, 200, 100))]  # only the second box's mask came back
    out = pair_masks(masks, [[0, 0, 20, 20], [100, 50, 200, 100]], 200, 100)
    assert out[0] is None and out[1].sum() == 100 * 50
    # as many masks as boxes but in the wrong order: matched by overlap
    masks = [rle(square(100, 200, 100, 50, 200, 100)), rle(square(100, 200, 0, 0, 20, 20))]
    out = pair_masks(masks, [[0, 0, 20, 20], [100, 50, 200, 100]], 200, 100)
    assert out[0].sum() == 400 and out[1].sum() == 5000
    assert pair_masks([], [[0, 0, 1, 1]], 10, 10) == [None]
    assert pair_masks([{"bad": 1}], np.zeros((0, 4)), 10, 10) == []


@pytest.fixture(scope="module")
def seg_grounder(tiny_falcon_seg_dir):
    with pytest.MonkeyPatch.context() as mp:
        use_tiny_model_args(tiny_falcon_seg_dir, mp)
        g = FalconGrounder.from_config(GrounderProvider(model=str(tiny_falcon_seg_dir), backend="mlx"))
    # Falcon upsamples its features to the input's size (AnyUp): keep the tiny test image small
    g.min_dimension, g.max_dimension = 32, 96
    return g


def test_segmentation_task_gives_every_box_its_mask(seg_grounder):
    assert seg_grounder.gives_masks and seg_grounder.model_args.do_segmentation
    image = Image.new("RGB", (96, 72), (200, 30, 30))
    det = seg_grounder.segment(image, ["red circle", "stop sign"])
    assert len(det) == 2 and det.queries.tolist() == ["red circle", "stop sign"]
    assert np.isnan(det.scores).all()
    assert det.has_mask().all()
    assert det.mask(0).shape == (72, 96)
    boxes = seg_grounder.boxes(image, ["red circle"])  # the detection task on the same model: no masks
    assert len(boxes) == 1 and not boxes.has_mask().any()
    assert np.allclose(boxes.xyxy[0], det.xyxy[0])
