"""Masks in the batch paths: ``label-factory config --masks`` and ``run --masks`` with tiny OWLv2, Qwen2.5-VL
and SAM loaded through the real provider paths; every result validated by label-studio-sdk against the
config ``config --masks`` prints, COCO segmentation read back by pycocotools."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface

from pipeline.config import load_project
from pipeline.labelstudio import Layout
from pipeline.labelstudio.masks import rle_to_mask
from pipeline.samples import write_samples
from tests import REPO
from tests.ls_helpers import assert_valid_prediction

CLI = str(Path(sys.executable).parent / "label-factory")


def tiny_project(tmp_path, tiny_qwen_dir, tiny_owlv2_dir, tiny_sam_dir) -> Path:
    data = yaml.safe_load((REPO / "projects" / "stop-signs.yaml").read_text())
    data["providers"]["vlm"] = {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"}
    data["providers"]["grounder"] = {"kind": "owlv2", "model": str(tiny_owlv2_dir)}
    data["providers"]["segmenter"] = {"model": str(tiny_sam_dir), "device": "cpu"}
    data["thresholds"].update({"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 3})
    path = tmp_path / "stop-signs-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("masks", ["brush", "polygon"])
def test_config_masks_is_a_valid_config_with_the_smart_tools(masks):
    out = subprocess.run([CLI, "config", "--project", str(REPO / "projects" / "stop-signs.yaml"), "--masks", masks],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    li = LabelInterface(config=out.stdout)
    lay = Layout.from_config(li)
    assert [(o.name, o.tag) for o in lay.outputs] == [("label", f"{masks}labels")] and lay.needs_masks
    assert [c.name for c in lay.clicks] == ["click"] and [c.name for c in lay.prompt_boxes] == ["box"]
    assert [c.name for c in lay.examples] == ["similar"] and lay.prompt == "prompt"
    assert lay.labels() == ["Stop Sign"]


def test_run_masks_brush_and_polygon(tmp_path, tiny_qwen_dir, tiny_owlv2_dir, tiny_sam_dir):
    images = tmp_path / "images"
    write_samples(images)
    project = tiny_project(tmp_path, tiny_qwen_dir, tiny_owlv2_dir, tiny_sam_dir)
    out = tmp_path / "out"
    proc = subprocess.run([CLI, "run", "--project", str(project), "--images", str(images), "--out", str(out),
                           "--limit", "2", "--quiet", "--masks", "brush"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = json.loads((out / "tasks.json").read_text())
    coco = json.loads((out / "coco.json").read_text())
    record = json.loads((out / "run.json").read_text())
    cfg = load_project(project)
    from pipeline.labelstudio.labeling_config import labeling_config
    li = LabelInterface(config=labeling_config(cfg, masks="brush"))
    regions = 0
    for task in tasks:
        pred = task["predictions"][0]
        assert_valid_prediction(li, pred["result"], pred["score"])
        for r in pred["result"]:
            assert r["type"] == "brushlabels" and r["value"]["brushlabels"] == ["Stop Sign"]
            assert rle_to_mask(r["value"]["rle"], r["original_width"], r["original_height"]).any()
            regions += 1
    assert regions == len(coco["annotations"]) >= 1
    assert all("segmentation" in a and a["area"] > 0 for a in coco["annotations"])
    assert record["masks"] == "brush"
    assert set(record["timings"]["seconds_per_image"]) == {"filter", "ground", "verify", "segment"}
    kept = [d for im in record["images"] for d in im["detections"] if d["kept"]]
    assert kept and all(d["mask_pixels"] > 0 and d["verify_score"] is not None for d in kept)

    # polygons from the same models, in this process
    from pipeline.cascade import Pipeline
    from pipeline.predict.folder import list_images, run_folder
    res = run_folder(cfg, list_images(images, 2), Pipeline(cfg), tmp_path, "v", progress=False, masks="polygon")
    li = LabelInterface(config=labeling_config(cfg, masks="polygon"))
    polygons = [r for t in res.tasks for r in t["predictions"][0]["result"]]
    for t in res.tasks:
        assert_valid_prediction(li, t["predictions"][0]["result"])
    assert polygons and all(r["type"] == "polygonlabels" and 3 <= len(r["value"]["points"]) <= 100 for r in polygons)
