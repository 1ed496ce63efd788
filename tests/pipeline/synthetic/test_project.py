"""A synthetic world written as a project (images, the importer's manifest, truth, YAML) and imported into a
real Label Studio the way ``label-factory import`` imports (slow)."""
import json

import numpy as np
import pytest

from pipeline import cli
from pipeline.config import load_project
from pipeline.images import open_image
from pipeline.importer.manifest import Manifest
from pipeline.labelstudio import lsapi
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.synthetic.project import annotation, read_truth, to_label_studio, truth_detections, write_world
from pipeline.synthetic.world import World

WORLD = dict(size=(320, 240))


def test_write_world_lays_out_images_manifest_truth_and_yaml(tmp_path):
    world = World(5, **WORLD)
    manifest = write_world(world, range(6), tmp_path)
    assert len(manifest) == 6 and len(Manifest.load(tmp_path)) == 6
    truth = read_truth(tmp_path)
    assert set(truth) == {e["id"] for e in manifest}
    for e in manifest:
        t = truth[e["id"]]
        scene = world.scene(t["index"])
        assert e["image_url"] == f"synthetic://5/{t['index']}" and (e["width"], e["height"]) == scene.size
        assert t["labels"] == scene.labels and np.allclose(np.reshape(t["boxes"], (-1, 4)), scene.boxes)
        image = open_image((tmp_path / e["path"]).read_bytes())
        assert image.size == scene.size  # JPEG: the pixels are close, not equal
        assert np.abs(np.asarray(image, float) - np.asarray(scene.image, float)).mean() < 10  # sensor noise vs JPEG
    cfg = load_project(tmp_path / "synthetic-world.yaml")
    assert cfg.labels() == world.classes and set(cfg.query_labels().values()) == set(world.classes)
    before = (tmp_path / "manifest.jsonl").read_text()
    write_world(world, range(6), tmp_path)  # written scenes are kept, nothing is added twice
    assert (tmp_path / "manifest.jsonl").read_text() == before
    assert len(write_world(world, range(8), tmp_path)) == 8


def test_world_command_writes_the_project(tmp_path, capsys):
    assert cli.main(["world", "--out", str(tmp_path), "--scenes", "4", "--seed", "2", "--size", "320x240"]) == 0
    out = capsys.readouterr().out
    assert "4 scenes of world 2 (320x240)" in out and len(read_truth(tmp_path)) == 4
    assert load_project(tmp_path / "synthetic-world.yaml").project_name == "synthetic-world"
    assert cli.main(["world", "--out", str(tmp_path), "--size", "big"]) == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_annotation_holds_the_boxes_in_percent_and_the_lead_time():
    world = World(5, empty_share=0.0, **WORLD)
    scene = world.scene(1)
    a = annotation(scene.truth(), *scene.size, lead_time=12.5)
    assert a["lead_time"] == 12.5 and not a["was_cancelled"]
    assert len(a["result"]) == len(scene.labels)
    w, h = scene.size
    for r, box, label in zip(a["result"], scene.boxes, scene.labels):
        v = r["value"]
        assert v["rectanglelabels"] == [label] and "score" not in r
        assert np.allclose([v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100,
                            (v["y"] + v["height"]) * h / 100], box, atol=1e-3)
    assert annotation(truth_detections({"boxes": [], "labels": []}), w, h)["result"] == []


@pytest.mark.slow
def test_world_in_label_studio_as_the_importer_makes_it(label_studio, tmp_path, capsys):
    world = World(6, **WORLD)
    write_world(world, range(5), tmp_path, name="synthetic-world-e2e")
    out = to_label_studio(tmp_path, label_studio.url, label_studio.token, name="synthetic-world-e2e")
    assert out["imported"] == 5 and len(out["tasks"]) == 5
    ls = label_studio.client()
    project = ls.projects.get(out["project"])
    cfg = load_project(tmp_path / "synthetic-world-e2e.yaml")
    assert "".join(project.label_config.split()) == "".join(labeling_config(cfg).split())
    truth = read_truth(tmp_path)
    tasks = {t.id: t for t in lsapi.items(ls.tasks.list, project=out["project"], fields="all")}
    for entry_id, task_id in out["tasks"].items():
        t = tasks[task_id]
        assert t.meta["sha256"][:16] == entry_id and t.meta["source"] == "synthetic"
        assert t.data["image"].startswith(f"/data/upload/{out['project']}/")
    again = to_label_studio(tmp_path, label_studio.url, label_studio.token, name="synthetic-world-e2e")
    assert again["imported"] == 0 and again["already"] == 5
    argv = ["world", "--out", str(tmp_path), "--scenes", "6", "--seed", "6", "--size", "320x240", "--name",
            "synthetic-world-e2e", "--import", "--label-studio-url", label_studio.url, "--api-key", label_studio.token]
    assert cli.main(argv) == 0  # `label-factory world --import`: one more scene, one more task
    assert "1 tasks imported, 5 there already" in capsys.readouterr().out
    # a reviewed annotation with its lead time, as the simulated annotator submits one
    entry_id, task_id = next(iter(out["tasks"].items()))
    rec = truth[entry_id]
    ls.annotations.create(id=task_id, **annotation(truth_detections(rec), rec["width"], rec["height"], lead_time=9.5))
    stored = json.loads(json.dumps(ls.tasks.get(task_id).annotations, default=str))
    assert len(stored) == 1 and stored[0]["lead_time"] == 9.5
    assert len(stored[0]["result"]) == len(rec["labels"])
