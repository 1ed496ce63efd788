"""`label-factory evaluate` against a real Label Studio 1.23: a project whose predictions and annotations are
created through the API (predictions first, so Label Studio's timestamps say what the annotator saw), then
the command in-process; every figure below is worked out by hand from the boxes.

Boxes are in percent of a 100 x 100 image (x, y, w, h).

task | v1 prediction (score)                          | v2             | annotation (lead_time)
A    | cat 10,10 (.9)  dog 50,50 (.8)  cat 80,0 (.95) | cat 10,10 (.6) | cat 10,10, cat 50,50 (30 s)
B    | cat 10,10 (.7)                                 |                | older (999 s); cat 12,10 + dog 60,60 (50 s)
C    |                                                |                | cat 0,0 (100 s)
D    | cat 30,30 (.2)                                 |                | no box (10 s)
E    | cat 5,5 (.04), made after the annotation       |                | cat 5,5 (70 s), then a cancelled one

v1 boxes: A kept, relabeled (dog on a cat), deleted (.95); B moved (IoU 360/440 = .818), dog added;
D deleted; E kept. """
from __future__ import annotations

import json

import pytest
import yaml

from pipeline import cli
from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from tests.ls_helpers import log_lines, task_pages_refused

pytestmark = pytest.mark.slow


def box(x, y, w, h, label, score=None):
    r = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 100,
         "original_height": 100, "image_rotation": 0,
         "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}
    if score is not None:
        r["score"] = score
    return r


@pytest.fixture(scope="module")
def project(label_studio, tmp_path_factory):
    path = tmp_path_factory.mktemp("evaluate") / "eval-cats.yaml"
    path.write_text(yaml.safe_dump({"project_name": "eval-cats", "target_object": "cat", "label": "Cat",
                                    "extra_labels": ["Dog"], "falcon_queries": ["cat"]}))
    ls = label_studio.client()
    p = ls.projects.create(title="eval-cats", label_config=labeling_config(load_project(path)))
    ls.projects.import_tasks(p.id, request=[{"image": f"/data/upload/{p.id}/{n}.jpg"} for n in "ABCDE"])
    ids = {t.data["image"][-5]: t.id for t in ls.tasks.list(project=p.id)}

    def predict(task, version, regions):
        ls.predictions.create(task=ids[task], model_version=version, result=regions,
                              score=max([r["score"] for r in regions], default=None))

    def annotate(task, regions, lead, **kw):
        ls.annotations.create(ids[task], result=regions, lead_time=lead, **kw)

    predict("A", "v1", [box(10, 10, 20, 20, "Cat", 0.9), box(50, 50, 20, 20, "Dog", 0.8),
                        box(80, 0, 10, 10, "Cat", 0.95)])
    predict("A", "v2", [box(10, 10, 20, 20, "Cat", 0.6)])
    predict("B", "v1", [box(10, 10, 20, 20, "Cat", 0.7)])
    predict("D", "v1", [box(30, 30, 10, 10, "Cat", 0.2)])
    annotate("A", [box(10, 10, 20, 20, "Cat"), box(50, 50, 20, 20, "Cat")], 30)
    annotate("B", [], 999)
    annotate("B", [box(12, 10, 20, 20, "Cat"), box(60, 60, 10, 10, "Dog")], 50)
    annotate("C", [box(0, 0, 10, 10, "Cat")], 100)
    annotate("D", [], 10)
    annotate("E", [box(5, 5, 10, 10, "Cat")], 70)
    annotate("E", [], 5, was_cancelled=True)
    predict("E", "v1", [box(5, 5, 10, 10, "Cat", 0.04)])
    return {"path": path, "id": p.id, "tasks": ids}


def test_evaluate_figures_match_the_hand_computed_ones(label_studio, project, tmp_path, monkeypatch, capsys):
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "report"
    argv = ["evaluate", "--project", str(project["path"]), "--label-studio-url", label_studio.url,
            "--api-key", label_studio.token, "--out", str(out), "--quiet", "--compare", "v1", "v2", "--suspects",
            "--page-size", "2"]  # several pages
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["project"]["id"] == project["id"] and report["project"]["control"] == "label"
    assert report["tasks"] == {"listed": 5, "reviewed": 5, "reviewed_without_prediction": 1, "skipped_regions": 0}
    v1 = report["versions"]["v1"]
    assert v1["tasks"] == 4 and v1["boxes"] == {"predicted": 6, "annotated": 5}
    d = v1["detection"]
    assert {k: d["all"][k] for k in ("tp", "fp", "fn")} == {"tp": 3, "fp": 3, "fn": 2}
    assert d["all"]["precision"] == 0.5 and d["all"]["recall"] == 0.6
    assert d["all"]["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert (d["Cat"]["precision"], d["Cat"]["recall"]) == (0.6, 0.75)
    # AP50 Cat: ranked FP .95, TP .9, TP .7, FP .2, TP .04 of 4 -> interpolated precision 2/3 up to recall .5
    # (51 of COCO's 101 points), .6 up to .75 (25 points): 49/101. At IoU > .8 B's moved box misses: 23/101.
    assert d["Cat"]["ap50"] == pytest.approx(49 / 101)
    assert d["Cat"]["ap50_95"] == pytest.approx((7 * 49 + 3 * 23) / 1010)
    assert d["Dog"]["ap50"] == 0.0 and d["all"]["ap50"] == pytest.approx(49 / 101 / 2)
    im = v1["images"]["all"]
    assert (im["tp"], im["fp"], im["fn"], im["tn"], im["precision"], im["recall"]) == (3, 1, 0, 0, 0.75, 1.0)
    a = v1["acceptance"]["all"]
    assert (a["predicted"], a["kept"], a["moved"], a["relabeled"], a["deleted"], a["added"]) == (6, 2, 1, 1, 2, 1)
    assert a["kept_share"] == pytest.approx(1 / 3) and a["moved_share"] == pytest.approx(1 / 6)
    assert v1["scores"]["reliability"]["ece"] == pytest.approx((0.85 + 0.8 + 0.7 + 0.2 + 0.96) / 6)
    assert v1["scores"]["histograms"]["kept"][18] == 1 and v1["scores"]["histograms"]["deleted"][19] == 1
    # lead time: A, B, D annotated with v1 in place (30, 50, 10); C none; E's prediction came after (70)
    assert v1["time"] == {"tasks": 3, "median_seconds": 30.0, "seconds_saved_per_task": 55.0}
    assert report["time_without_prediction"] == {"tasks": 2, "median_seconds": 85.0}
    assert report["versions"]["v2"]["time"]["median_seconds"] == 30.0

    c = report["compare"]
    assert (c["a"], c["b"], c["tasks"]) == ("v1", "v2", 1)
    rows = {r["metric"]: r for r in c["rows"]}
    assert rows["box precision"]["a"] == pytest.approx(1 / 3) and rows["box precision"]["b"] == 1.0
    assert rows["box recall"]["a"] == 0.5 and rows["box recall"]["b"] == 0.5 and rows["box recall"]["delta"] == 0

    link = f"{label_studio.url}/projects/{project['id']}/data?task="
    assert [(s["task"], s["model_version"], s["kind"]) for s in report["suspects"]] == [
        (project["tasks"]["E"], "v1", "kept a doubted box"), (project["tasks"]["A"], "v1", "deleted a confident box")]
    assert report["suspects"][0]["link"] == link + str(project["tasks"]["E"])

    page = (out / "report.html").read_text()
    assert "<svg" in page and "eval-cats" in page and f'href="{link}{project["tasks"]["A"]}"' in page
    assert "Predictions vs reviewed annotations" in printed and "deleted a confident box" in printed
    assert label_studio.token not in printed + page + (out / "report.json").read_text()


def test_the_listing_never_asks_past_the_last_page(label_studio, project, tmp_path):
    """One route (lsapi.items over GET /api/tasks pages): 5 reviewed tasks in pages of 1, 2 and 5 read the same
    report, and Label Studio answers no request with 404 (a page past the last, a traceback in its log)."""
    since, runs = log_lines(label_studio), []
    for size in (1, 2, 5):
        out = tmp_path / str(size)
        assert cli.main(["evaluate", "--ls-project", str(project["id"]), "--label-studio-url", label_studio.url,
                         "--api-key", label_studio.token, "--out", str(out), "--quiet", "--page-size", str(size),
                         "--no-html", "--json"]) == 0
        report = json.loads((out / "report.json").read_text())
        report.pop("timing"), report.pop("generated_at")
        runs.append(report)
    assert runs[0]["tasks"]["listed"] == 5 and runs[0] == runs[1] == runs[2]
    assert task_pages_refused(label_studio, since) == []


def test_clear_errors(label_studio, project, tmp_path, capsys):
    base = ["evaluate", "--label-studio-url", label_studio.url, "--api-key", label_studio.token, "--out", str(tmp_path)]
    assert cli.main(base + ["--ls-project", str(project["id"]), "--compare", "v1", "nope", "--quiet"]) == 2
    assert "no reviewed task has a prediction with model_version 'nope'" in capsys.readouterr().err
    assert cli.main(base) == 2
    assert "--project YAML" in capsys.readouterr().err
    assert cli.main(base + ["--ls-project", "99999"]) == 2
    assert "Label Studio answered HTTP 404" in capsys.readouterr().err
    assert cli.main(base + ["--ls-project", "1", "--iou", "0.95"]) == 2  # above --keep-iou
    assert "--iou <= --keep-iou" in capsys.readouterr().err
    other = label_studio.client().projects.create(title="no-boxes", label_config=(
        '<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="x"/>'
        "</Choices></View>"))
    assert cli.main(base + ["--ls-project", str(other.id)]) == 2
    assert "nothing to evaluate: the labeling config has no output" in capsys.readouterr().err
