"""`label-factory run` end to end with tiny local models loaded through the real provider paths."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface

from pipeline.cascade import Pipeline
from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.predict import job as batch
from pipeline.predict import runner
from pipeline.samples import write_samples
from tests import REPO


def tiny_project(tmp_path, vlm, grounder, **thresholds) -> Path:
    data = yaml.safe_load((REPO / "projects" / "stop-signs.yaml").read_text())
    data["providers"]["vlm"] = vlm
    data["providers"]["grounder"] = grounder
    # random weights: open the gates so boxes reach the output (we check flow, not quality)
    data["thresholds"].update({"filter": 0.0, "grounding": 0.0, "verify": 0.0, **thresholds})
    path = tmp_path / "stop-signs-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("grounder", ["owlv2", "grounding-dino"])
def test_cli_run_writes_coco_tasks_and_record(tmp_path, request, tiny_qwen_dir, grounder):
    grounder_dir = request.getfixturevalue({"owlv2": "tiny_owlv2_dir", "grounding-dino": "tiny_gdino_dir"}[grounder])
    images = tmp_path / "images"
    write_samples(images)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    project = tiny_project(tmp_path, {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                           {"kind": grounder, "model": str(grounder_dir)}, max_boxes=3)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "label-factory"), "run", "--project", str(project),
           "--images", str(images), "--out", str(out), "--limit", "6", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5/6 images labeled" in proc.stdout and "broken.jpg" in proc.stdout

    coco = json.loads((out / "coco.json").read_text())
    tasks = json.loads((out / "tasks.json").read_text())
    record = json.loads((out / "run.json").read_text())
    assert len(coco["images"]) == 5 and len(tasks) == 5
    assert 1 <= len(coco["annotations"]) <= 5 * 3
    assert {c["name"] for c in coco["categories"]} == {"Stop Sign"}
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= W + 0.01 and y + h <= H + 0.01 and 0 <= ann["score"] <= 1
    for task in tasks:
        assert task["data"]["image"].startswith("/data/local-files/?d=images/")
        pred = task["predictions"][0]
        assert pred["model_version"].startswith("stop-signs-")
        for r in pred["result"]:
            assert r["type"] == "rectanglelabels" and r["from_name"] == "label" and r["to_name"] == "image"
            assert r["value"]["rectanglelabels"] == ["Stop Sign"]
            v = r["value"]
            assert 0 <= v["x"] <= 100 and 0 <= v["y"] <= 100 and v["x"] + v["width"] <= 100.01

    # the version the backend and `predict` write for this YAML: `predict --only-missing` skips these tasks
    cfg = load_project(project)
    req = runner.prepare(cfg, Pipeline(cfg), "7", LabelInterface(config=labeling_config(cfg)))
    assert {t["predictions"][0]["model_version"] for t in tasks} == {req.version} == {record["model_version"]}
    assert not any(batch.needs_prediction({"id": i, **t}, req.version) for i, t in enumerate(tasks))

    assert record["counts"] == {"images": 6, "labeled": 5, "skipped": 1, "boxes": len(coco["annotations"])}
    assert "broken.jpg" in record["skipped"][0]["reason"] and "not an image" in record["skipped"][0]["reason"]
    assert record["prompts"]["verify"] == "Is this a stop sign? Answer YES or NO."
    assert record["providers"]["vlm"]["name"] == "transformers"
    assert set(record["timings"]["seconds_per_image"]) == {"filter", "ground", "verify"}
    first = record["images"][0]
    assert first["filter"]["method"] == "logits" and 0 <= first["filter"]["p_yes"] <= 1
    dropped = [d for im in record["images"] for d in im["detections"] if not d["kept"]]
    assert all(d["reason"] for d in dropped)  # every dropped box says why (NMS / max_boxes)


@pytest.mark.slow
def test_cascade_with_server_vlm_and_falcon(tmp_path, mlx_vlm_server, tiny_falcon_dir, monkeypatch):
    """The other provider pair: the openai provider against a real mlx_vlm.server, Falcon on MLX."""
    from pipeline.cascade import Pipeline
    from pipeline.images import open_image
    from pipeline.providers.registry import providers
    from pipeline.tiny.falcon import use_tiny_model_args

    use_tiny_model_args(tiny_falcon_dir, monkeypatch)
    providers.clear()
    project = tiny_project(tmp_path, {"kind": "openai", "url": str(mlx_vlm_server), "model": mlx_vlm_server.model,
                                      "retries": 1},
                           {"kind": "falcon", "model": str(tiny_falcon_dir), "backend": "mlx"})
    cfg = load_project(project)
    image = open_image(write_samples(tmp_path / "images")[0])
    res = Pipeline(cfg).run(image)
    providers.clear()
    assert res.filter_answer.method == "logprobs" and res.passed_filter
    d = res.detections
    assert len(d) >= 1 and np.isnan(d.scores).all()  # Falcon has no confidence ...
    kept = d.active()
    assert len(kept) >= 1 and not np.isnan(kept.final_scores()).any()  # ... the score is verify's P(yes)
    assert np.allclose(kept.final_scores(), kept.verify_scores)
    assert {a["method"] for a in res.verify_answers} == {"logprobs"}
