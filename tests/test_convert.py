import json

import numpy as np
import pytest
from PIL import Image

from pipeline.convert import CocoBuilder, coco_to_xyxy, ls_results, ls_to_xyxy, task_score, xyxy_to_coco, xyxy_to_ls
from pipeline.detections import Detections
from pipeline.images import open_image


def test_pixel_ls_coco_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = rng.integers(10, 5000, 2)
        x1, x2 = np.sort(rng.uniform(0, w, 2))
        y1, y2 = np.sort(rng.uniform(0, h, 2))
        box = np.array([x1, y1, x2, y2], np.float32)
        v = xyxy_to_ls(box, w, h)
        assert 0 <= v["x"] <= 100 and 0 <= v["x"] + v["width"] <= 100.001
        assert np.allclose(ls_to_xyxy(v, w, h), box, atol=1e-3)
        assert np.allclose(coco_to_xyxy(xyxy_to_coco(box)), box, atol=1e-3)


def test_ls_value_known_numbers():
    assert xyxy_to_ls([50, 25, 150, 75], 200, 100) == {"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0,
                                                        "rotation": 0}
    with pytest.raises(ValueError, match="rotated"):
        ls_to_xyxy({"x": 1, "y": 1, "width": 1, "height": 1, "rotation": 30}, 10, 10)


def test_ls_results_shape_label_map_and_scores():
    d = Detections(xyxy=[[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 5]], scores=[0.9, np.nan, 0.4],
                   labels=["stop sign", "stop sign", "yield"])
    d.verify_scores[1] = 0.7
    d.drop([False, False, False], "verify", "")
    res = ls_results(d, 40, 20, "label", "image", label_map={"stop sign": "Stop Sign"})
    assert len(res) == 2  # "yield" has no place in the config
    r = res[0]
    assert r["type"] == "rectanglelabels" and r["from_name"] == "label" and r["to_name"] == "image"
    assert r["value"]["rectanglelabels"] == ["Stop Sign"] and r["original_width"] == 40
    assert r["value"]["width"] == pytest.approx(25.0) and r["value"]["height"] == pytest.approx(50.0)
    assert [x["score"] for x in res] == pytest.approx([0.9, 0.7])
    assert task_score(res) == pytest.approx(0.8)
    assert len({x["id"] for x in res}) == 2


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


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_rotated_image_coordinates(tmp_path, orientation):
    """A box found on the upright image maps to LS percents of the upright (displayed) size,
    and back onto the same pixels of the red square a person sees."""
    upright = Image.new("RGB", (300, 200), "white")
    upright.paste((255, 0, 0), (30, 40, 90, 80))  # red square at x 30..90, y 40..80
    # store it rotated on disk with the EXIF tag that undoes the rotation
    undo = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(undo[orientation]) if undo[orientation] else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)
    im = open_image(path)
    assert im.size == (300, 200)
    a = np.asarray(im).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 200) & (a[..., 1] < 80))
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert np.allclose(box, [30, 40, 90, 80], atol=2)
    v = xyxy_to_ls(box, *im.size)
    assert v["x"] == pytest.approx(10, abs=1) and v["y"] == pytest.approx(20, abs=1)
