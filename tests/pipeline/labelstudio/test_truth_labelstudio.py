"""The reviewed truth against a real Label Studio 1.23: a brush, a polygon and a rotated-box project (the configs
`label-factory config` writes, the regions of tests/pipeline/labelstudio/test_truth.py) filled through the API,
then `label-factory export` and `label-factory evaluate` run in-process, calibrate's and identify's readings
of the listed tasks: every one reads the same two boxes per task, the hand-computed ones."""
from __future__ import annotations

import json

import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from pipeline import cli
from pipeline.calibrate.candidates import INCLUDE, truth_boxes
from pipeline.evaluate.cli import fetch_tasks
from pipeline.evaluate.listing import list_reviewed_tasks
from pipeline.importer.ls_project import LabelStudioTarget
from pipeline.labelstudio import truth
from pipeline.labelstudio.target import find_target
from pipeline.references import fit
from tests.pipeline.labelstudio.test_truth import CFG, KINDS, H, W, assert_same, config, pairs, region, regions
from tests.pipeline.labelstudio.test_truth import task as constructed_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def projects(label_studio, tmp_path_factory):
    """kind -> Label Studio project id, one reviewed task each (an older annotation, the reviewed one, a cancelled
    one) and a prediction of ``v1`` that is the reviewed annotation's output regions."""
    ls = label_studio.client()
    image = tmp_path_factory.mktemp("truth") / "scene.png"
    Image.new("RGB", (W, H), (90, 120, 150)).save(image)
    out = {}
    for kind in KINDS:
        p = ls.projects.create(title=f"truth-{kind}", label_config=config(kind))
        url = LabelStudioTarget(client=ls).upload(p.id, image)
        ls.projects.import_tasks(p.id, request=[{"image": url}])
        (t,) = ls.tasks.list(project=p.id)
        anns = constructed_task(kind)["annotations"]
        for a in anns:
            ls.annotations.create(t.id, result=a["result"], was_cancelled=bool(a.get("was_cancelled")),
                                  lead_time=1.0)
        outputs = truth.output_results(anns[1]["result"], truth.layout_of(config(kind)))
        ls.predictions.create(task=t.id, model_version="v1", result=[{**r, "score": 0.9} for r in outputs],
                              score=0.9)
        out[kind] = p.id
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_export_evaluate_calibrate_and_identify_read_the_same_truth(label_studio, projects, tmp_path, kind):
    pid, (_, want) = projects[kind], regions(kind)
    want = pairs(*zip(*want))
    conn = ["--ls-project", str(pid), "--label-studio-url", label_studio.url, "--api-key", label_studio.token]
    assert cli.main(["export", *conn, "--format", "coco", "--out", str(tmp_path / "export"), "--quiet"]) == 0
    exported = []
    for s in ("train", "val", "test"):
        d = json.loads((tmp_path / "export" / "annotations" / f"instances_{s}.json").read_text())
        names = {c["id"]: c["name"] for c in d["categories"]}
        exported += [(names[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                a["bbox"][1] + a["bbox"][3]]) for a in d["annotations"]]
    assert_same(sorted(exported), want)

    assert cli.main(["evaluate", *conn, "--out", str(tmp_path / "evaluate"), "--quiet", "--json", "--no-html"]) == 0
    report = json.loads((tmp_path / "evaluate" / "report.json").read_text())
    v1 = report["versions"]["v1"]
    assert report["tasks"]["skipped_regions"] == 0 and v1["boxes"] == {"predicted": 2, "annotated": 2}
    assert {k: v1["detection"]["all"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 0, "fn": 0}

    client = label_studio.client()
    layout = truth.layout_of(client.projects.get(pid).label_config)
    (evaluated,), listed, _ = fetch_tasks(client, pid, layout, 100, progress=False)
    assert listed == 1 and evaluated.truth is not None
    assert_same(pairs(evaluated.truth.boxes.labels, evaluated.truth.boxes.xyxy), want)

    (listed_task,) = list_reviewed_tasks(client, pid, include=INCLUDE)  # what calibrate reads
    calibrated = truth_boxes(listed_task, find_target(LabelInterface(config=config(kind)), CFG), W, H)
    assert_same(pairs(calibrated.labels, calibrated.xyxy), want)

    reviewed = truth.reviewed_annotation(listed_task)  # identify embeds the regions of the annotation it is sent
    referenced = fit.regions_of(reviewed["result"], W, H, fit.project_layout(client.projects.get(pid)))
    assert_same(pairs(referenced.labels, referenced.xyxy), want)


def test_a_ground_truth_annotation_is_the_truth(label_studio, projects):
    """Label Studio's ground-truth flag wins over a later annotation."""
    client = label_studio.client()
    pid = projects["rotated"]
    (t,) = client.tasks.list(project=pid)
    box = region("rect", "g", {"x": 0, "y": 0, "width": 10, "height": 10, "rotation": 0}, "Dog")
    marked = client.annotations.create(t.id, result=[box], ground_truth=True)
    later = client.annotations.create(t.id, result=[])
    try:
        (listed,) = list_reviewed_tasks(client, pid, include=INCLUDE)
        got = truth.reviewed_annotation(listed)
        assert got["id"] == marked.id and got["ground_truth"] is True
    finally:
        client.annotations.delete(marked.id)
        client.annotations.delete(later.id)
