"""Detections -> COCO (boxes, and masks as RLE segmentation), loaded back by pycocotools."""
import json

import numpy as np

from pipeline.convert import CocoBuilder, xyxy_to_coco
from pipeline.detections import Detections


def test_pixel_coco_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = rng.integers(10, 5000, 2)
        x1, x2 = np.sort(rng.uniform(0, w, 2))
        y1, y2 = np.sort(rng.uniform(0, h, 2))
        box = np.array([x1, y1, x2, y2], np.float32)
        x, y, w, h = xyxy_to_coco(box)
        assert np.allclose([x, y, x + w, y + h], box, atol=1e-3) and w >= 0 and h >= 0


def test_coco_is_loadable_by_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    b = CocoBuilder(["Stop Sign"])
    i = b.add_image("a.jpg", 40, 20)
    d = Detections(xyxy=[[1, 2, 11, 12], [0, 0, 4, 4]], scores=[0.5, 0.6], labels=["Stop Sign", "Other"])
    b.add_detections(i, d)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(b.to_dict()))
    coco = COCO(str(p))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
    assert [a["bbox"] for a in anns] == [[1, 2, 10, 10], [0, 0, 4, 4]]
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"Stop Sign", "Other"}
    assert "segmentation" not in anns[0]


def test_coco_carries_mask_segmentation_as_rle(tmp_path):
    from pycocotools.coco import COCO
    mask = np.zeros((20, 40), bool)
    mask[2:12, 1:11] = True
    mask[5:7, 4:6] = False  # a hole: 100 - 4 pixels
    b = CocoBuilder(["Stop Sign"])
    i = b.add_image("a.jpg", 40, 20)
    d = Detections(xyxy=[[1, 2, 11, 12], [20, 0, 30, 10]], scores=[0.5, 0.6], labels=["Stop Sign"] * 2,
                   masks=[mask, None])
    b.add_detections(i, d)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(b.to_dict()))
    coco = COCO(str(p))
    ann, plain = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
    assert ann["area"] == 96 and isinstance(ann["segmentation"]["counts"], str)
    assert (coco.annToMask(ann).astype(bool) == mask).all()
    assert "segmentation" not in plain and plain["area"] == 100
    # pycocotools reads it back as a result too (area and box from the RLE)
    dt = coco.loadRes([{"image_id": i, "category_id": ann["category_id"], "segmentation": ann["segmentation"],
                        "score": 0.5}])
    (res,) = dt.loadAnns(dt.getAnnIds())
    assert res["area"] == 96 and list(res["bbox"]) == [1, 2, 10, 10]
