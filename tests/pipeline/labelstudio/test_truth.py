"""pipeline/labelstudio/truth.py: one reviewed truth for evaluate, calibrate, export and identify.

Three projects as `label-factory config` writes them: brush masks (``--masks brush``: a BrushLabels output
beside smartOnly click / box / similar prompt tools), polygons (``--masks polygon``) and plain rectangles,
rotated. Each task's reviewed annotation holds a Cat and a Dog (and, on the brush project, the prompts a
person used); every consumer must read the same two boxes from it: the hand-computed ones."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from pipeline.calibrate.candidates import truth_boxes
from pipeline.config import parse_project
from pipeline.distill.export import write_dataset
from pipeline.distill.reviewed import examples
from pipeline.evaluate.tasks import parse_task
from pipeline.images import open_image
from pipeline.labelstudio import truth
from pipeline.labelstudio.coords import points_to_percent, xyxy_to_rect
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.masks import mask_to_rle
from pipeline.labelstudio.target import find_target
from pipeline.references.fit import regions_of
from tests.doubles import regions as regions_

W, H = 120, 80
CFG = parse_project({"project_name": "truth", "target_object": "cat", "label": "Cat", "extra_labels": ["Dog"],
                     "falcon_queries": ["cat", "dog"]})
KINDS = ("brush", "polygon", "rotated")
A30 = math.radians(30)


def region(kind, rid, value, label, from_name="label", **extra):
    return regions_.region(kind, value, label, rid=rid, from_name=from_name, size=(W, H), **extra)


def brush(rid, mask, label):
    return region("brush", rid, {"format": "rle", "rle": mask_to_rle(mask)}, label)


def ellipse(cx, cy, rx, ry):
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1


def rotated(rid, x, y, w, h, label, degrees=30):
    """A rectangle with its top-left corner at pixel (x, y), w x h px, turned ``degrees`` clockwise about it."""
    return region("rect", rid, {**xyxy_to_rect([x, y, x + w, y + h], W, H), "rotation": degrees}, label)


def regions(kind: str) -> tuple[list[dict], list[tuple[str, list[float]]]]:
    """The reviewed annotation's result on a ``kind`` project and the truth it holds: [(label, pixel xyxy)]."""
    if kind == "brush":
        cat = np.zeros((H, W), bool)
        cat[8:40, 10:50] = True  # 40 x 32 px from (10, 8)
        dog = ellipse(85, 52, 25, 20)  # a round mask: its box is where its pixels are
        ys, xs = np.nonzero(dog)
        result = [brush("c", cat, "Cat"), brush("d", dog, "Dog"),
                  # the prompts a person gave with the smart tools: never truth
                  region("rect", "p1", xyxy_to_rect([0, 0, 30, 30], W, H), "Cat", from_name="box"),
                  region("rect", "p2", xyxy_to_rect([70, 0, 110, 20], W, H), "Dog", from_name="similar"),
                  region("point", "p3", {"x": 20.0, "y": 20.0, "width": 1.0}, "Cat", from_name="click")]
        return result, [("Cat", [10, 8, 50, 40]), ("Dog", [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])]
    if kind == "polygon":
        cat = [(10, 8), (50, 8), (30, 40)]
        dog = [(60, 30), (110, 50), (80, 75), (62, 60)]
        result = [region("polygon", "c", {"points": points_to_percent(cat, W, H)}, "Cat"),
                  region("polygon", "d", {"points": points_to_percent(dog, W, H)}, "Dog")]
        return result, [("Cat", [10, 8, 50, 40]), ("Dog", [60, 30, 110, 75])]
    # a 40 x 20 px Cat turned 30 degrees about its top-left corner (20, 10): corners (20, 10), (20 + 40 cos,
    # 10 + 40 sin), (20 + 40 cos - 20 sin, 10 + 40 sin + 20 cos), (20 - 20 sin, 10 + 20 cos); a Dog not turned
    c, s = math.cos(A30), math.sin(A30)
    result = [rotated("c", 20, 10, 40, 20, "Cat"), rotated("d", 70, 40, 30, 30, "Dog", degrees=0)]
    return result, [("Cat", [20 - 20 * s, 10, 20 + 40 * c, 10 + 40 * s + 20 * c]), ("Dog", [70, 40, 100, 70])]


def config(kind: str) -> str:
    return labeling_config(CFG, masks={"brush": "brush", "polygon": "polygon"}.get(kind))


def task(kind: str, tid: int = 1) -> dict:
    result, _ = regions(kind)
    older = [region("rect", "o", xyxy_to_rect([0, 0, 5, 5], W, H), "Cat")]
    return {"id": tid, "data": {"image": f"/data/upload/1/{tid}.png"}, "annotations": [
        {"id": 10, "result": older, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
        {"id": 11, "result": result, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
         "lead_time": 9.0},
        {"id": 12, "result": [], "was_cancelled": True, "updated_at": "2026-01-03T00:00:00Z"}],
        "predictions": []}


def pairs(labels, xyxy) -> list[tuple[str, list[float]]]:
    return sorted((str(lab), [round(float(v), 2) for v in box]) for lab, box in zip(labels, xyxy))


def assert_same(got, want):
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=0.011)


def coco_truth(tmp_path, kind: str, tasks: list[dict]) -> list[tuple[str, list[float]]]:
    """What `export --format coco` writes for the tasks (pixel boxes)."""
    layout = truth.layout_of(config(kind))
    exs, tally = examples(tasks, layout)
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (90, 120, 150)).save(buf, "PNG")
    manifest = write_dataset(exs, tmp_path / kind, "coco", lambda url, tid: open_image(buf.getvalue()),
                             layout.labels(), progress=False)
    assert manifest["left_out"]["degenerate"] == 0
    out = []
    for s in ("train", "val", "test"):
        d = json.loads((tmp_path / kind / "annotations" / f"instances_{s}.json").read_text())
        names = {c["id"]: c["name"] for c in d["categories"]}
        out += [(names[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                           a["bbox"][1] + a["bbox"][3]]) for a in d["annotations"]]
    return sorted(out)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_calibrate_export_and_identify_read_the_same_truth(tmp_path, kind):
    t = task(kind)
    _, want = regions(kind)
    want = pairs(*zip(*want))
    layout = truth.layout_of(config(kind))
    evaluated = parse_task(t, layout).truth
    assert evaluated.id == 11 and parse_task(t, layout).skipped_regions == 0
    assert_same(pairs(evaluated.boxes.labels, evaluated.boxes.xyxy), want)
    calibrated = truth_boxes(t, find_target(LabelInterface(config=config(kind)), CFG), W, H)
    assert_same(pairs(calibrated.labels, calibrated.xyxy), want)
    assert_same(coco_truth(tmp_path, kind, [t]), want)
    referenced = regions_of(t["annotations"][1]["result"], W, H, layout)
    assert_same(pairs(referenced.labels, referenced.xyxy), want)


def test_the_prompt_tools_of_a_brush_config_are_never_outputs():
    layout = truth.layout_of(config("brush"))
    assert [o.name for o in layout.outputs] == ["label"]
    result, _ = regions("brush")
    assert [r["id"] for r in truth.output_results(result, layout)] == ["c", "d"]


def test_which_annotation_is_the_reviewed_one():
    def ann(aid, updated, **kw):
        return {"id": aid, "result": [], "updated_at": updated, **kw}
    tasks = {
        "latest submitted": ([ann(1, "2026-01-02"), ann(2, "2026-01-03"), ann(3, "2026-01-04", was_cancelled=True)], 2),
        "ground truth first": ([ann(1, "2026-01-02", ground_truth=True), ann(2, "2026-01-03")], 1),
        "latest ground truth": ([ann(1, "2026-01-02", ground_truth=True), ann(2, "2026-01-03", ground_truth=True),
                                 ann(3, "2026-01-05")], 2),
        "a cancelled ground truth does not count": ([ann(1, "2026-01-02", ground_truth=True, was_cancelled=True),
                                                     ann(2, "2026-01-01")], 2),
        "same time: the higher id": ([ann(4, "2026-01-02"), ann(3, "2026-01-02")], 4),
        "no updated_at: created_at": ([{"id": 5, "created_at": "2026-01-09"}, ann(6, "2026-01-08")], 5),
        "only cancelled: not reviewed": ([ann(1, "2026-01-02", was_cancelled=True)], None),
        "drafts are not annotations": ([], None),
    }
    for why, (anns, want) in tasks.items():
        got = truth.reviewed_annotation({"id": 1, "annotations": anns, "drafts": [{"id": 9, "result": []}]})
        assert (None if got is None else got["id"]) == want, why


def test_boxes_reads_each_label_once_and_counts_what_it_leaves_out():
    two = region("rect", "m", xyxy_to_rect([10, 10, 30, 30], W, H), "Cat")
    two["value"]["rectanglelabels"] = ["Cat", "Dog"]
    sliver = region("rect", "s", {"x": 50, "y": 10, "width": 0.1, "height": 20, "rotation": 0}, "Cat")
    outside = region("rect", "o", {"x": 120, "y": 10, "width": 10, "height": 20, "rotation": 0}, "Cat")
    broken = region("polygon", "b", {"points": [[1, 1]]}, "Cat")
    scored = region("rect", "x", xyxy_to_rect([40, 40, 60, 60], W, H), "Dog", score=0.25)
    dets, left_out = truth.boxes([two, sliver, outside, broken, scored], W, H)
    assert dets.labels.tolist() == ["Cat", "Dog", "Dog"] and left_out == 3
    np.testing.assert_allclose(dets.scores, [np.nan, np.nan, 0.25])  # a region's own score
    # clipped to the image; as stored: not
    part = region("rect", "p", {"x": 90, "y": 10, "width": 20, "height": 20, "rotation": 0}, "Cat")
    dets, _ = truth.boxes([part], W, H)
    np.testing.assert_allclose(dets.xyxy, [[108, 8, 120, 24]], atol=1e-4)
    np.testing.assert_allclose(dets.extra["as_stored"], [[108, 8, 132, 24]], atol=1e-4)


def test_a_brush_is_decoded_at_the_size_label_studio_recorded():
    """The RLE is of the recorded image: read at another size (a fetched image twice as big), its box scales;
    before, it was decoded at the other size and refused as not matching."""
    mask = np.zeros((H, W), bool)
    mask[8:40, 10:50] = True
    dets, left_out = truth.boxes([brush("c", mask, "Cat")], 2 * W, 2 * H)
    assert left_out == 0
    np.testing.assert_allclose(dets.xyxy, [[20, 16, 100, 80]])
