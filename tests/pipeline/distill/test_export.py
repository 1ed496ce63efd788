"""Export to disk from constructed examples (no Label Studio: see test_export_labelstudio.py for that)."""
import json
import os

import numpy as np
import pytest
import supervision as sv
import yaml
from PIL import Image
from pycocotools.coco import COCO

from pipeline.distill.export import ExportError, write_dataset
from pipeline.distill.reviewed import Example
from pipeline.distill.split import SPLITS
from tests.doubles.images import jpeg
from tests.pipeline.distill.conftest import CLASSES, fetcher, make_examples, rect, scene


def test_yolo_export_reads_back_through_supervision_to_the_pixel(tmp_path):
    exs, files, truth = make_examples(8)
    manifest = write_dataset(exs, tmp_path / "ds", "yolo", fetcher(files), CLASSES, progress=False)
    root = tmp_path / "ds"
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {0: "Stop Sign", 1: "Car"} and data["nc"] == 2 and "path" not in data
    for s in SPLITS:  # every split folder exists, even an empty one
        assert (root / "images" / s).is_dir() and (root / "labels" / s).is_dir()
        assert data[s] == f"images/{s}"
    seen = {}
    for s in SPLITS:
        ds = sv.DetectionDataset.from_yolo(str(root / "images" / s), str(root / "labels" / s), str(root / "data.yaml"))
        assert ds.classes == CLASSES
        for path, _, dets in ds:
            seen[int(path.rsplit("/", 1)[1].split(".")[0])] = dets
    assert sorted(seen) == sorted(truth)
    for tid, boxes in truth.items():
        got = sorted(zip([CLASSES[c] for c in seen[tid].class_id], seen[tid].xyxy.tolist()))
        want = sorted((lab, list(b)) for lab, b in boxes)
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=0.02)
    by_task = {f["task_id"]: f for f in manifest["files"]}
    assert by_task[101]["annotation_id"] == 1000 and by_task[101]["source"] == "annotation"
    assert not by_task[101]["pseudo"]
    assert (root / by_task[101]["file"]).exists() and (root / by_task[101]["labels"]).exists()
    assert json.loads((root / "manifest.json").read_text())["files"] == manifest["files"]
    assert manifest["boxes_per_class"] == {"Stop Sign": 8, "Car": 4}
    assert manifest["counts"]["train"]["images"] >= 1 and manifest["counts"]["val"]["images"] >= 1


def test_coco_export_loads_with_pycocotools_and_marks_pseudo_labels(tmp_path):
    exs, files, truth = make_examples(6)
    exs[2] = Example(exs[2].task_id, exs[2].image_url, "prediction", 555,
                     [{**r, "score": 0.8} for r in exs[2].results], model_version="v1")
    manifest = write_dataset(exs, tmp_path / "ds", "coco", fetcher(files), CLASSES, progress=False)
    found = {}
    for s in SPLITS:
        coco = COCO(str(tmp_path / "ds" / "annotations" / f"instances_{s}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
        for img in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / "ds" / "images" / s / img["file_name"]).exists()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
            found[img["task_id"]] = (img, [(coco.cats[a["category_id"]]["name"], a) for a in anns])
    assert sorted(found) == sorted(truth)
    for tid, boxes in truth.items():
        img, anns = found[tid]
        got = sorted((name, [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]])
                     for name, a in anns)
        want = sorted((lab, list(b)) for lab, b in boxes)
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=0.02)
        pseudo = tid == exs[2].task_id
        assert img["pseudo"] is pseudo and all(("score" in a) is pseudo for _, a in anns)
    rec = next(f for f in manifest["files"] if f["task_id"] == exs[2].task_id)
    assert rec["pseudo"] and rec["prediction_id"] == 555 and rec["model_version"] == "v1"
    assert sum(c["pseudo"] for c in manifest["counts"].values()) == 1


def test_exif_rotated_photo_is_exported_as_displayed(tmp_path):
    """Label Studio measures the displayed (EXIF-corrected) image: the export holds those pixels."""
    shown = scene((64, 96), [("Stop Sign", (10, 50, 40, 90))])  # what a person sees: 64 wide, 96 tall
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # on disk 96x64, EXIF orientation 6 turns it back
    files = {"/data/upload/1/5.jpg": jpeg(stored, orientation=6)}
    ex = Example(5, "/data/upload/1/5.jpg", "annotation", 50,
                 [rect("Stop Sign", (10, 50, 40, 90), (64, 96))])
    manifest = write_dataset([ex], tmp_path / "ds", "yolo", fetcher(files), CLASSES, progress=False)
    rec = manifest["files"][0]
    assert (rec["width"], rec["height"]) == (64, 96) and manifest["left_out"]["size_mismatch"] == 0
    im = np.asarray(Image.open(tmp_path / "ds" / rec["file"]))
    assert im.shape[:2] == (96, 64)
    inside = im[55:85, 15:35].reshape(-1, 3).mean(0)
    assert inside[0] > 180 and inside[2] < 60  # the red box is where the annotation says


def test_broken_image_fails_its_task_only_and_labels_outside_the_classes_are_counted(tmp_path):
    exs, files, _ = make_examples(5)
    del files[exs[1].image_url]
    manifest = write_dataset(exs, tmp_path / "ds", "yolo", fetcher(files), ["Stop Sign"], progress=False)
    assert [f["task"] for f in manifest["left_out"]["image_failed"]] == [exs[1].task_id]
    assert "no such image" in manifest["left_out"]["image_failed"][0]["reason"]
    assert len(manifest["files"]) == 4
    assert manifest["left_out"]["dropped_labels"] == {"Car": 1}  # 104 (102 has one too, but it failed)
    data = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    assert data["names"] == {0: "Stop Sign"}


def test_out_folder_rules(tmp_path):
    exs, files, _ = make_examples(3)
    fetch = fetcher(files)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a label-factory export"):
        write_dataset(exs, tmp_path / "mine", "yolo", fetch, CLASSES, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    write_dataset(exs, tmp_path / "ds", "yolo", fetch, CLASSES, progress=False)
    write_dataset(exs[:2], tmp_path / "ds", "yolo", fetch, CLASSES, progress=False)  # an earlier export: replaced
    assert len(list((tmp_path / "ds").glob("images/*/*.jpg"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]  # no temporary folders left

    def dying_fetch(url, task_id):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_dataset(exs, tmp_path / "ds", "yolo", dying_fetch, CLASSES, progress=False, concurrency=1)
    assert len(list((tmp_path / "ds").glob("images/*/*.jpg"))) == 2  # the previous export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]
    with pytest.raises(ExportError, match="nothing to export"):
        write_dataset([], tmp_path / "empty", "yolo", fetch, CLASSES, progress=False)


def test_an_export_that_cannot_move_in_puts_the_previous_one_back(tmp_path, monkeypatch):
    exs, files, _ = make_examples(3)
    write_dataset(exs[:2], tmp_path / "ds", "yolo", fetcher(files), CLASSES, progress=False)
    real = os.replace

    def replace(src, dst):  # the old export is moved aside, then the new one cannot take its place
        if ".partial-" in str(src):
            raise OSError("cannot move the new export in")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="cannot move"):
        write_dataset(exs, tmp_path / "ds", "yolo", fetcher(files), CLASSES, progress=False)
    assert len(list((tmp_path / "ds").glob("images/*/*.jpg"))) == 2  # the previous export, where it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_box_with_less_than_a_pixel_inside_the_image_is_counted_not_fatal(tmp_path):
    """A sliver (0.1 % wide) or a box off the image is left out and counted as degenerate; the rest export."""
    exs, files, _ = make_examples(2)
    sliver = {"x": 10, "y": 10, "width": 0.1, "height": 20, "rotation": 0}
    outside = {"x": 120, "y": 10, "width": 10, "height": 20, "rotation": 0}
    exs[0].results.extend([rect("Stop Sign", None, (96, 64), value=v) for v in (sliver, outside)])
    manifest = write_dataset(exs, tmp_path / "ds", "yolo", fetcher(files), CLASSES, progress=False)
    assert len(manifest["files"]) == 2 and manifest["left_out"]["degenerate"] == 2
    labels = (tmp_path / "ds" / manifest["files"][0]["file"].replace("images", "labels")).with_suffix(".txt")
    assert len(labels.read_text().splitlines()) == 1  # the task's own box, not the two slivers
