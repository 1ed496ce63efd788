"""`label-factory calibrate` against a real Label Studio 1.23, then the backend using what it wrote.

Five uploaded 100 x 100 PNGs; the scripted providers know each image by its background colour and each crop
by the colour painted inside its candidate box. Every task is annotated with one "Stop Sign" box at
10,10-40,40, where each image's first candidate lies ("hit"); the second candidate ("miss") lies at 55,55.

task | filter P(yes) | hit: grounding, verify | miss: grounding, verify
1    | 0.9           | 0.9, 0.95              | 0.5, 0.40
2    | 0.8           | 0.8, 0.90              | 0.6, 0.85
3    | 0.7           | 0.7, 0.80              | 0.2, 0.90
4    | 0.6           | 0.3, 0.70              | 0.4, 0.60
5    | 0.2           | (the grounder finds nothing)

Precision >= 0.75 by hand (tests/pipeline/calibrate/test_search.py works the same boxes): grounding 0.3 and
verify 0.70 find 4 of the 5 boxes with 1 miss (task 2's, 0.85) -> precision 0.8, recall 0.8; grounding 0.2
keeps task 3's miss at 0.90, above two hits; 0.4 loses task 4's hit. Any filter threshold up to 0.6 keeps the
four hits: 0.6, the highest, is chosen. Now (filter 0.5, grounding 0.1, verify 0.5) tasks 3 and 4 get their
miss too; after calibration they do not."""
from __future__ import annotations

import io

import pytest
import requests
import yaml
from PIL import Image, ImageDraw

from backends.autolabel.model import AutoLabelModel
from backends.base import init_app
from pipeline import cli
from pipeline.cascade import Pipeline
from pipeline.config import calibration_path, load_project
from pipeline.labelstudio import lsapi
from pipeline.labelstudio import versions as project_version
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.model_version import model_version
from pipeline.predict import runner
from tests.doubles.images import encode
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

pytestmark = pytest.mark.slow

HIT, MISS = [10, 10, 40, 40], [55, 55, 85, 85]
FILTER = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6, 5: 0.2}
CANDIDATES = {1: [(0.9, 0.95), (0.5, 0.40)], 2: [(0.8, 0.90), (0.6, 0.85)], 3: [(0.7, 0.80), (0.2, 0.90)],
              4: [(0.3, 0.70), (0.4, 0.60)], 5: []}
PROJECT = {"project_name": "calibrate-signs", "target_object": "stop sign", "label": "Stop Sign",
           "falcon_queries": ["stop sign"],
           "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5, "max_boxes": 5}}


def png(i: int) -> bytes:
    """Image ``i``: background (i, 10, 10); candidate j painted (i, 100 + j, 200)."""
    im = Image.new("RGB", (100, 100), (i, 10, 10))
    for j, _ in enumerate(CANDIDATES[i]):
        ImageDraw.Draw(im).rectangle([c - (k >= 2) for k, c in enumerate((HIT, MISS)[j])], fill=(i, 100 + j, 200))
    return encode(im, "PNG")


class ByColour(ScriptedGrounder):
    """Each image's candidates (``CANDIDATES``), known by the image's background colour."""

    def boxes(self, image, queries):
        self.calls.append(list(queries))
        i = image.getpixel((0, 0))[0]
        return ScriptedGrounder([((HIT, MISS)[j], g, "stop sign") for j, (g, _) in enumerate(CANDIDATES[i])]
                                ).boxes(image, queries)


def p_yes(image, question):
    """The filter's P(yes) for a whole image, verify's for a crop (known by the colour at its centre)."""
    if image.size == (100, 100):
        return FILTER[image.getpixel((0, 0))[0]]
    i, j, _ = image.getpixel((image.width // 2, image.height // 2))
    return CANDIDATES[i][j - 100][1]


def rect(xyxy) -> dict:
    x1, y1, x2, y2 = xyxy
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
            "original_height": 100, "image_rotation": 0,
            "value": {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1, "rotation": 0,
                      "rectanglelabels": ["Stop Sign"]}}


@pytest.fixture
def world(label_studio, tmp_path, monkeypatch):
    path = tmp_path / "projects" / "calibrate-signs.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(PROJECT))
    cfg = load_project(path)
    ls = label_studio.client()
    project = ls.projects.create(title=f"calibrate-signs-{tmp_path.name}", label_config=labeling_config(cfg))
    files = [(f"f{i}", (f"img{i}.png", png(i), "image/png")) for i in FILTER]
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                      headers=label_studio.headers(), timeout=60)
    assert r.status_code == 201, r.text
    tasks = sorted(lsapi.items(ls.tasks.list, project=project.id), key=lambda t: t.id)
    by_image = {}
    for t in tasks:
        i = Image.open(io.BytesIO(requests.get(f"{label_studio.url}{t.data['image']}", headers=label_studio.headers(),
                                               timeout=30).content)).getpixel((0, 0))[0]
        by_image[i] = t
        ls.annotations.create(t.id, result=[rect(HIT)], lead_time=5)
    vlm, grounder = ScriptedVLM(p_yes), ByColour([])
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda c: Pipeline(c, vlm=vlm, grounder=grounder))
    for k, v in {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
                 "PROJECT_CONFIG": str(path), "PROJECTS_DIR": str(path.parent)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(project_version, "keep", lambda *a: None)  # the project's model_version: not tested here
    runner.pipelines.clear()
    yield {"path": path, "project": project, "tasks": by_image, "vlm": vlm, "grounder": grounder,
           "argv": ["calibrate", "--project", str(path), "--ls-project", str(project.id), "--quiet"]}
    runner.pipelines.clear()


def backend_predict(world, *images):
    client = init_app(AutoLabelModel).test_client()
    body = client.post("/predict", json={
        "tasks": [{"id": world["tasks"][i].id, "data": world["tasks"][i].data} for i in images],
        "project": f"{world['project'].id}.1700000000", "label_config": world["project"].label_config}).json
    assert "errors" not in body, body
    return body


def boxes_of(pred) -> list:
    return [[round(r["value"][k]) for k in ("x", "y")] for r in pred["result"]]


def test_calibrate_picks_the_hand_computed_thresholds_and_the_backend_uses_them(world, capsys):
    before = backend_predict(world, 3, 4)
    assert [boxes_of(p) for p in before["results"]] == [[[10, 10], [55, 55]], [[10, 10], [55, 55]]]
    asked_by_backend = len(world["vlm"].calls) + len(world["grounder"].calls)
    assert asked_by_backend == 2 + 2 + 4  # filter, ground, verify of the 4 boxes over grounding 0.1

    # the default minimum of 30 reviewed boxes: refused, with the reason, nothing written
    assert cli.main(world["argv"] + ["--target-precision", "0.75"]) == 1
    out = capsys.readouterr().out
    assert "5 reviewed box(es), fewer than the minimum 30" in out and "nothing written" in out
    assert not calibration_path(world["path"]).exists()
    calls = len(world["vlm"].calls) + len(world["grounder"].calls)
    assert calls == asked_by_backend + 10  # 18 answers with thresholds at 0; the backend's 8 came from the cache

    argv = world["argv"] + ["--target-precision", "0.75", "--min-boxes", "5", "--folds", "2"]
    assert cli.main(argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and "0.5 -> 0.6" in out and "0.1 -> 0.3" in out
    assert "0.5 -> 0.699999" in out and "model answers: 18 from the answer cache, 0 asked" in out
    assert not calibration_path(world["path"]).exists()

    assert cli.main(argv + ["--json"]) == 0
    import json
    report = json.loads(capsys.readouterr().out)
    assert len(world["vlm"].calls) + len(world["grounder"].calls) == calls  # no model call for a re-calibration
    lab = report["labels"]["Stop Sign"]
    assert lab["status"] == "calibrated" and lab["boxes"] == 5
    assert lab["written"] == {"verify": 0.699999, "grounding": 0.3}
    assert report["filter"] == {"stage": "on", "old": 0.5, "new": 0.6}
    assert (lab["before"]["tp"], lab["before"]["fp"], lab["before"]["fn"]) == (4, 3, 1)  # task 5's filter: 0.2
    assert (lab["fitted"]["tp"], lab["fitted"]["fp"], lab["fitted"]["fn"]) == (4, 1, 1)
    pooled = lab["held_out"]["pooled"]
    assert pooled["tp"] + pooled["fn"] == 5  # every reviewed box held out exactly once
    assert report["effect"] == {"boxes_before": 7, "boxes_after": 5, "tasks_past_filter_before": 4,
                                "tasks_past_filter_after": 4}
    written = yaml.safe_load(calibration_path(world["path"]).read_text())
    assert written["thresholds"] == {"filter": 0.6, "per_label": {"Stop Sign": {"verify": 0.699999, "grounding": 0.3}}}
    assert report["model_version"]["after"] == model_version(load_project(world["path"])) != \
        report["model_version"]["before"]

    after = backend_predict(world, 3, 4)
    assert after["model_version"] == report["model_version"]["after"] != before["model_version"]
    # task 3's miss (grounding 0.2 < 0.3) and task 4's (verify 0.6 < 0.7) are no longer returned
    assert [boxes_of(p) for p in after["results"]] == [[[10, 10]], [[10, 10]]]
    assert len(world["vlm"].calls) + len(world["grounder"].calls) == calls  # and cost no model call


class StudentByColour(ByColour):
    """The routing student: the same boxes, scored by their grounding score, named by class."""

    def boxes(self, image, queries):
        self.calls.append(list(queries))
        i = image.getpixel((0, 0))[0]
        return ScriptedGrounder([((HIT, MISS)[j], g, "Stop Sign") for j, (g, _) in enumerate(CANDIDATES[i])]
                                ).boxes(image, queries)


def test_calibrate_route_writes_each_labels_band(world, capsys, monkeypatch):
    """The student's scores are the grounding scores above: 0.9 H, 0.8 H, 0.7 H, 0.6 M, 0.5 M, 0.4 M, 0.3 H, 0.2 M.
    Precision >= 0.75 on the student alone: 3 right at 0.7 (1.0) or at 0.6 (0.75, one wrong): the fewest wrong,
    0.7 (as float32: 0.699999). The floor keeping all four right boxes: 0.3."""
    weights = world["path"].parent / "student.pt"
    weights.write_bytes(b"student weights")
    world["path"].write_text(yaml.safe_dump({**PROJECT, "route": {"student": str(weights)}}))
    student = StudentByColour([])
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda c: Pipeline(c, vlm=world["vlm"], grounder=student))
    before = model_version(load_project(world["path"]))
    assert cli.main(world["argv"] + ["--route", "--target-precision", "0.75"]) == 0
    out = capsys.readouterr().out
    assert "Stop Sign: floor 0.3, accept 0.699999 (4 of 8 student boxes right" in out
    assert student.calls and all(q == ["Stop Sign"] for q in student.calls) and world["vlm"].calls == []
    written = yaml.safe_load(calibration_path(world["path"]).read_text())
    assert written["route"] == {"per_label": {"Stop Sign": {"floor": 0.3, "accept": 0.699999}}}
    assert "thresholds" not in written
    cfg = load_project(world["path"])
    assert (cfg.route.floor_for("Stop Sign"), cfg.route.accept_for("Stop Sign")) == (0.3, 0.699999)
    assert model_version(cfg) != before
    # a later calibration of the cascade's thresholds keeps the band
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda c: Pipeline(c, vlm=world["vlm"], grounder=world["grounder"]))
    assert cli.main(world["argv"] + ["--target-precision", "0.75", "--min-boxes", "5", "--folds", "2"]) == 0
    written = yaml.safe_load(calibration_path(world["path"]).read_text())
    assert written["route"] == {"per_label": {"Stop Sign": {"floor": 0.3, "accept": 0.699999}}}
    assert written["thresholds"]["per_label"]["Stop Sign"] == {"verify": 0.699999, "grounding": 0.3}
    assert cli.main(world["argv"] + ["--keep-recall", "0.5", "--target-precision", "0.75"]) == 2
    # with max_uncertain 0 any box in the band sends its image through the cascade: 3 of the 5 tasks at floor 0.3
    # (0.5; 0.6; 0.3 and 0.4). At most 20 % (one task): the floor rises over 0.5, to 0.51, dropping the right 0.3
    world["path"].write_text(yaml.safe_dump({**PROJECT, "route": {"student": str(weights), "max_uncertain": 0}}))
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda c: Pipeline(c, vlm=world["vlm"], grounder=student))
    capsys.readouterr()
    assert cli.main(world["argv"] + ["--route", "--target-precision", "0.75", "--to-cascade", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "Stop Sign: floor 0.51, accept 0.699999" in out
    assert "floor raised from 0.3 (--keep-recall 0.98) so that 20% of the reviewed images go through the whole " \
           "cascade (--to-cascade 0.2); it keeps 75% of the student's right boxes" in " ".join(out.split())
    written = yaml.safe_load(calibration_path(world["path"]).read_text())
    assert written["route"]["per_label"]["Stop Sign"]["floor"] == 0.51
    assert cli.main(world["argv"] + ["--to-cascade", "0.2", "--target-precision", "0.75"]) == 2
