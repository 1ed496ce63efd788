"""`label-factory export` against a real Label Studio 1.23: uploaded images (one EXIF-rotated), annotations made
through the API from known pixel boxes, predictions as pseudo-labels; the export read back with pycocotools
and supervision's YOLO loader gives the same boxes, to the pixel."""
import json

import numpy as np
import pytest
import requests
import supervision as sv
import yaml
from PIL import Image
from pycocotools.coco import COCO

from pipeline.cli import main
from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
from tests.doubles import regions as regions_
from tests.doubles.images import jpeg
from tests.ls_helpers import log_lines, task_pages_refused
from tests.pipeline.distill.conftest import CLASSES, scene

pytestmark = pytest.mark.slow

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="Stop Sign"/><Label value="Car"/></RectangleLabels></View>"""


def region(label, xyxy, size, score=None):
    return regions_.region("rect", xyxy_to_ls(xyxy, *size), label, size=size, score=score)


@pytest.fixture(scope="module")
def project(label_studio):
    """Eight tasks, each a case of what export must do; returns (project, tasks by name, truth by task id)."""
    ls = label_studio.client()
    project = ls.projects.create(title="distill export", label_config=CONFIG)
    boxes = {  # name -> (displayed size, [(label, pixel xyxy)])
        "two": ((96, 64), [("Stop Sign", (8, 6, 40, 38)), ("Car", (50, 21, 90, 60))]),
        "relabelled": ((96, 64), [("Stop Sign", (30, 10, 62, 42))]),
        "rotated": ((64, 96), [("Stop Sign", (10, 50, 40, 90))]),
        "skipped": ((96, 64), [("Car", (5, 5, 30, 30))]),
        "pseudo": ((120, 80), [("Car", (60, 10, 110, 70)), ("Stop Sign", (5, 5, 25, 25))]),
        "negative": ((96, 64), []),
        "unlabelled": ((96, 64), []),
        "big": ((150, 100), [("Car", (0, 0, 150, 100)), ("Stop Sign", (100.5, 20.25, 130.75, 60))]),
    }
    files = []
    for i, (name, (size, bxs)) in enumerate(boxes.items()):
        im = scene(size, [(lab, tuple(int(round(v)) for v in b)) for lab, b in bxs], seed=i)
        data = jpeg(im.transpose(Image.Transpose.ROTATE_90), orientation=6) if name == "rotated" else jpeg(im)
        files.append((f"file{i}", (f"{name}.jpg", data, "image/jpeg")))
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                      headers=label_studio.headers(), timeout=60)
    assert r.status_code == 201, r.text
    tasks = {}
    for t in ls.tasks.list(project=project.id):
        name = t.data["image"].rsplit("-", 1)[-1].removesuffix(".jpg")
        tasks[name] = t.id

    def annotate(name, regions, **kw):
        return ls.annotations.create(id=tasks[name], result=regions, **kw).id

    size = lambda n: boxes[n][0]  # noqa: E731
    ann = {"two": annotate("two", [region(lab, b, size("two")) for lab, b in boxes["two"][1]])}
    annotate("relabelled", [region("Car", (1, 1, 20, 20), size("relabelled"))])  # the older one
    regions = lambda n: [region(lab, b, size(n)) for lab, b in boxes[n][1]]  # noqa: E731
    ann["relabelled"] = annotate("relabelled", regions("relabelled"))
    ann["rotated"] = annotate("rotated", regions("rotated"))
    annotate("skipped", regions("skipped"), was_cancelled=True)
    ann["negative"] = annotate("negative", [])
    ann["big"] = annotate("big", regions("big"))
    pred = ls.predictions.create(task=tasks["pseudo"], model_version="cascade-v1", score=0.6, result=[
        region("Car", boxes["pseudo"][1][0][1], size("pseudo"), score=0.9),
        region("Stop Sign", boxes["pseudo"][1][1][1], size("pseudo"), score=0.2)])
    ls.predictions.create(task=tasks["two"], model_version="cascade-v1", result=[
        region("Car", (0, 0, 10, 10), size("two"), score=0.99)])  # reviewed: the annotation wins
    truth = {tasks[n]: list(boxes[n][1]) for n in ("two", "relabelled", "rotated", "negative", "big")}
    truth[tasks["pseudo"]] = [boxes["pseudo"][1][0]]  # only the box scoring >= 0.5
    return project, tasks, truth, ann, pred.id, {tasks[n]: boxes[n][0] for n in boxes}


def _close(got, want):
    got = sorted((lab, list(map(float, b))) for lab, b in got)
    want = sorted((lab, list(map(float, b))) for lab, b in want)
    assert [g[0] for g in got] == [w[0] for w in want]
    if want:
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=0.02)


def test_coco_export_round_trips_against_label_studio(label_studio, project, tmp_path):
    proj, tasks, truth, ann, pred_id, sizes = project
    since = log_lines(label_studio)
    rc = main(["export", "--out", str(tmp_path / "coco"), "--format", "coco", "--label-studio-url", label_studio.url,
               "--api-key", label_studio.token, "--ls-project", str(proj.id), "--pseudo-labels", "cascade-v1",
               "--quiet"])
    assert rc == 0
    found = {}
    for s in ("train", "val", "test"):
        coco = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{s}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
        for img in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
            boxes = [(coco.cats[a["category_id"]]["name"], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                           a["bbox"][1] + a["bbox"][3]]) for a in anns]
            found[img["task_id"]] = (img, boxes, anns)
            assert (img["width"], img["height"]) == sizes[img["task_id"]]
    assert sorted(found) == sorted(truth)  # skipped and unlabelled tasks are not exported
    for tid, want in truth.items():
        _close(found[tid][1], want)
    img, _, anns = found[tasks["pseudo"]]
    assert img["pseudo"] is True and img["prediction_id"] == pred_id and anns[0]["score"] == pytest.approx(0.9)
    assert found[tasks["relabelled"]][0]["annotation_id"] == ann["relabelled"]  # the latest annotation
    manifest = json.loads((tmp_path / "coco" / "manifest.json").read_text())
    assert manifest["source"]["project_id"] == proj.id and manifest["source"]["label_studio_url"] == label_studio.url
    assert manifest["source"]["pseudo_labels"] == {"model_version": "cascade-v1", "min_score": 0.5}
    assert manifest["left_out"]["only_cancelled"] == 1 and manifest["left_out"]["no_labels"] == 1
    assert manifest["left_out"]["low_score"] == 1
    assert task_pages_refused(label_studio, since) == []  # the tasks were paged, never past the last page


def test_yolo_export_by_project_title_round_trips_and_keeps_exif_corrected_pixels(label_studio, project, tmp_path,
                                                                                  monkeypatch):
    proj, tasks, truth, ann, _, sizes = project
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"project_name": "distill export", "target_object": "stop sign"}))
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.personal_access_token())
    out = tmp_path / "yolo"
    assert main(["export", "--out", str(out), "--project", str(tmp_path / "p.yaml"), "--split", "0.5,0.25,0.25",
                 "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(f["task_id"] for f in manifest["files"]) == sorted(set(truth) - {tasks["pseudo"]})
    by_task = {f["task_id"]: f for f in manifest["files"]}
    assert by_task[tasks["two"]]["annotation_id"] == ann["two"] and by_task[tasks["two"]]["source"] == "annotation"
    seen = {}
    for s in ("train", "val", "test"):
        ds = sv.DetectionDataset.from_yolo(str(out / "images" / s), str(out / "labels" / s), str(out / "data.yaml"))
        assert ds.classes == CLASSES
        for path, image, dets in ds:
            tid = int(path.rsplit("/", 1)[1].split(".")[0])
            assert by_task[tid]["split"] == s and image.shape[1::-1] == sizes[tid]
            seen[tid] = [(CLASSES[c], b) for c, b in zip(dets.class_id, dets.xyxy)]
    for tid, boxes in seen.items():
        _close(boxes, truth[tid])
    rotated = np.asarray(Image.open(out / by_task[tasks["rotated"]]["file"]))
    assert rotated.shape[:2] == (96, 64)  # as displayed, not as stored
    inside = rotated[55:85, 15:35].reshape(-1, 3).mean(0)
    assert inside[0] > 180 and inside[2] < 60
    # the same project exported again: the same split for every task
    assert main(["export", "--out", str(out), "--ls-project", str(proj.id), "--split", "0.5,0.25,0.25",
                 "--quiet"]) == 0
    again = json.loads((out / "manifest.json").read_text())
    split_of = lambda m: [(f["task_id"], f["split"]) for f in m["files"]]  # noqa: E731
    assert split_of(again) == split_of(manifest)
    assert again["task_ids_sha256"] == manifest["task_ids_sha256"]
