"""End to end with masks: a real Label Studio 1.23 and the backend under real gunicorn (tiny random
Qwen2.5-VL, OWLv2 and SAM loaded through the real paths). A BrushLabels and a PolygonLabels project:
"Retrieve predictions" stores mask predictions that read back through Label Studio's API, validate
against the project's config (label-studio-sdk) and decode; Label Studio's interactive endpoint answers
a click and an example box with results of the output's type.

Random weights: thresholds are 0 so boxes survive; this checks the protocol and shapes, not quality."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml
from label_studio_sdk.label_interface import LabelInterface

from pipeline.config import load_project
from pipeline.labelstudio.coords import percent_to_points, xyxy_to_rect
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.masks import polygon_to_mask, rle_to_mask
from tests.doubles.images import IMAGE_SIZE
from tests.ls_helpers import assert_valid_prediction, project_with_broken_task, start_backend, tiny_project_yaml

pytestmark = pytest.mark.slow
W, H = IMAGE_SIZE


@pytest.fixture(scope="module")
def project_yaml(tmp_path_factory, tiny_qwen_dir, tiny_owlv2_dir, tiny_sam_dir) -> Path:
    path = tiny_project_yaml(tmp_path_factory.mktemp("masks-project") / "e2e-masks.yaml", "e2e-masks",
                             tiny_qwen_dir, tiny_owlv2_dir, max_boxes=2)
    data = yaml.safe_load(path.read_text())
    data["providers"]["segmenter"] = {"model": str(tiny_sam_dir), "device": "cpu"}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def backend(label_studio, project_yaml, tmp_path_factory):
    svc = start_backend(tmp_path_factory.mktemp("masks-backend"), project_yaml, label_studio.url, label_studio.token)
    try:
        yield type("Backend", (), {"url": svc.url, "log": lambda: svc.log_path.read_text()})
    finally:
        svc.stop()


def interactive(label_studio, ml_id, task_id, results):
    r = requests.post(f"{label_studio.url}/api/ml/{ml_id}/interactive-annotating", headers=label_studio.headers(),
                      json={"task": task_id, "context": {"result": results}}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.mark.parametrize("masks", ["brush", "polygon"])
def test_mask_projects_in_label_studio(label_studio, backend, project_yaml, masks):
    ls = label_studio.client()
    cfg = load_project(project_yaml)
    config = labeling_config(cfg, masks=masks)
    li = LabelInterface(config=config)
    project, good, _ = project_with_broken_task(label_studio, f"e2e {masks}", config, 2)
    ml = ls.ml.create(project=project.id, url=backend.url, title="label-factory", is_interactive=True)
    ml = ls.ml.get(ml.id)
    assert ml.state == "CO", (ml.state, ml.error_message)

    ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True,
                                                                                           "excluded": []})
    kind = f"{masks}labels"
    for t in good:
        (pred,) = list(ls.predictions.list(task=t.id))
        assert pred.model_version == ml.model_version and pred.result, backend.log()[-3000:]
        assert_valid_prediction(li, pred.result, pred.score)
        for r in pred.result:
            assert r["type"] == kind and r["value"][kind] == ["Stop Sign"] and 0 <= r["score"] <= 1
            assert (r["original_width"], r["original_height"]) == (W, H)
            if masks == "brush":
                assert rle_to_mask(r["value"]["rle"], W, H).any()  # decodes at the image's size
            else:
                pts = percent_to_points(r["value"]["points"], W, H)
                assert 3 <= len(pts) <= 100 and polygon_to_mask(pts, W, H).any()

    # a click with the smart keypoint tool: the object under it, as a mask of the project's output
    click = {"id": "k1", "from_name": "click", "to_name": "image", "type": "keypointlabels", "is_positive": True,
             "original_width": W, "original_height": H,
             "value": {"x": 50.0, "y": 50.0, "width": 1.0, "keypointlabels": ["Stop Sign"]}}
    data = interactive(label_studio, ml.id, good[0].id, [click])
    assert data["model_version"] == ml.model_version
    (answer,) = data["result"]  # one object
    assert answer["type"] == kind and answer["value"][kind] == ["Stop Sign"]
    assert_valid_prediction(li, data["result"])

    # an example box drawn with the find-similar tool: more like it, as masks, never the example itself
    example = {"id": "e1", "from_name": "similar", "to_name": "image", "type": "rectanglelabels",
               "original_width": W, "original_height": H,
               "value": {**xyxy_to_rect([30, 14, 66, 50], W, H), "rectanglelabels": ["Stop Sign"]}}
    data = interactive(label_studio, ml.id, good[1].id, [example])
    assert 1 <= len(data["result"]) <= 2 and all(r["type"] == kind for r in data["result"])
    assert_valid_prediction(li, data["result"])
    log = backend.log()
    assert "Traceback" not in log, log[-3000:]
