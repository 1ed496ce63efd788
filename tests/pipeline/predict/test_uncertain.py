"""`label-factory predict --order uncertain` against a real Label Studio 1.23: the task score is the task's
certainty (pipeline/certainty.py), and the least certain unlabeled tasks come first in the list, in the
Data Manager's own ordering and in the tab it makes.

Five uploaded PNGs (and a task whose image is gone: no prediction, no score), known to the scripted VLM by
their colour; one box per image (grounding 0.9); thresholds filter 0.5, verify 0.6. Certainty by hand, the
least of the filter's and verify's:

image | filter P(yes)     | verify P(yes)        | certainty
1     | 0.9  -> 0.4/0.5   | 0.95 -> 0.35/0.4     | 0.8
2     | 0.55 -> 0.05/0.5  | 0.99 -> 0.39/0.4     | 0.1   (annotated: not listed)
3     | 0.05 -> 0.45/0.5  | (filtered out)       | 0.9   a confident "no" is certain
4     | 0.95 -> 0.45/0.5  | 0.62 -> 0.02/0.4     | 0.05
5     | 0.7  -> 0.2/0.5   | 0.9  -> 0.3/0.4      | 0.4
"""
from __future__ import annotations

import io
import json

import pytest
import requests
import yaml
from PIL import Image

from pipeline import cli
from pipeline.cascade import Pipeline
from pipeline.config import load_project
from pipeline.labelstudio import lsapi
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.predict import runner
from tests.doubles.images import encode
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM
from tests.ls_helpers import dm_tasks

pytestmark = pytest.mark.slow

FILTER = {1: 0.9, 2: 0.55, 3: 0.05, 4: 0.95, 5: 0.7}
VERIFY = {1: 0.95, 2: 0.99, 4: 0.62, 5: 0.9}
CERTAINTY = {1: 0.8, 2: 0.1, 3: 0.9, 4: 0.05, 5: 0.4}


def png(i: int) -> bytes:
    return encode(Image.new("RGB", (60, 60), (i, 20, 20)), "PNG")


def p_yes(image, question):
    i = image.getpixel((image.width // 2, image.height // 2))[0]
    return FILTER[i] if image.size == (60, 60) else VERIFY[i]


def test_most_uncertain_unlabeled_tasks_first(label_studio, tmp_path, monkeypatch, capsys):
    path = tmp_path / "uncertain.yaml"
    path.write_text(yaml.safe_dump({"project_name": "uncertain-signs", "target_object": "stop sign",
                                    "label": "Stop Sign", "falcon_queries": ["stop sign"],
                                    "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.6}}))
    ls = label_studio.client()
    project = ls.projects.create(title="uncertain-signs", label_config=labeling_config(load_project(path)))
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", headers=label_studio.headers(),
                      files=[(f"f{i}", (f"{i}.png", png(i), "image/png")) for i in FILTER], timeout=60)
    assert r.status_code == 201, r.text
    ls.projects.import_tasks(project.id, request=[{"image": f"/data/upload/{project.id}/gone.png"}])  # no score
    image_of = {}
    for t in lsapi.items(ls.tasks.list, project=project.id):
        if t.data["image"].endswith("gone.png"):
            continue
        got = requests.get(label_studio.url + t.data["image"], headers=label_studio.headers(), timeout=30)
        image_of[t.id] = Image.open(io.BytesIO(got.content)).getpixel((0, 0))[0]
    task_of = {i: t for t, i in image_of.items()}
    ls.annotations.create(task_of[2], result=[], lead_time=3)
    vlm, grounder = ScriptedVLM(p_yes), ScriptedGrounder([([10, 10, 50, 50], 0.9, "stop sign")])
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda cfg: Pipeline(cfg, vlm=vlm, grounder=grounder))
    runner.pipelines.clear()
    argv = ["predict", "--project", str(path), "--ls-project", str(project.id), "--label-studio-url",
            label_studio.url, "--api-key", label_studio.token, "--quiet", "--order", "uncertain", "--top", "3"]
    try:
        assert cli.main(argv + ["--json"]) == 0
    finally:
        runner.pipelines.clear()
    out = json.loads(capsys.readouterr().out)
    assert out["predicted"] == 5 and out["failed"] == 1
    stored = {image_of[p.task]: p.score for p in ls.predictions.list(project=project.id)}
    assert stored == pytest.approx(CERTAINTY, abs=1e-6)  # float32 P(yes)
    found = out["most_uncertain"]
    # the annotated 0.1 is not listed, nor the task without a prediction (no score)
    assert [image_of[t["id"]] for t in found["tasks"]] == [4, 5, 1]
    assert [t["score"] for t in found["tasks"]] == pytest.approx([0.05, 0.4, 0.8], abs=1e-6)
    assert found["tasks"][0]["link"] == f"{label_studio.url}/projects/{project.id}/data?task={task_of[4]}"
    tab = int(found["tab"].rsplit("=", 1)[1])
    view = next(v for v in ls.views.list(project=project.id) if v.id == tab)
    assert view.data["title"] == lsapi.UNCERTAIN_TAB and view.data["ordering"] == ["tasks:predictions_score"]
    rows = dm_tasks(label_studio, project.id, "tasks:predictions_score")  # the column a team sorts by hand
    assert [image_of.get(t["id"]) for t in rows if t["predictions_score"] is not None] == [4, 2, 5, 1, 3]

    assert cli.main(argv + ["--dry-run"]) == 0  # listing again: nothing predicted, the same tab brought up to date
    printed = capsys.readouterr().out
    assert f"task {task_of[4]}  0.050" in printed and "Data Manager tab" in printed
    assert [v.id for v in ls.views.list(project=project.id) if v.data.get("title") == lsapi.UNCERTAIN_TAB] == [tab]
