"""Training from a model config with random initial weights (nothing downloaded), 1-2 epochs at 64 px,
and the student grounder loading the result through its real path (registry -> from_config -> YOLO)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pipeline.config import GrounderProvider, parse_project
from pipeline.detections import Detections
from pipeline.distill.train import TrainConfig, TrainError, train
from pipeline.weights import sha256_file
from tests import REPO
from tests.pipeline.distill.conftest import CLASSES, make_examples, scene

TINY = dict(model="yolo11n.yaml", imgsz=64, batch=4, device="cpu", workers=0, plots=False, amp=False)


def _no_network_prefix() -> list[str]:
    """``unshare -n`` (a network namespace with only a down loopback) where this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.fixture(scope="module")
def trained(yolo_export, tmp_path_factory):
    """`label-factory train` as a user runs it, with no network at all where the machine allows it."""
    data, manifest, _ = yolo_export
    out = tmp_path_factory.mktemp("runs") / "student"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = _no_network_prefix() + [sys.executable, "-m", "pipeline.cli", "train", "--data", str(data), "--out", str(out),
                                  "--model", "yolo11n.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4",
                                  "--device", "cpu", "--workers", "0", "--no-plots"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=out.parent)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return out, manifest, p.stdout + p.stderr


def test_train_writes_weights_metrics_and_model_card(trained):
    out, manifest, output = trained
    for f in ("weights/best.pt", "weights/last.pt", "metrics.json", "model_card.json", "model_card.md",
              "results.csv"):
        assert (out / f).is_file(), f
    assert not list(out.parent.glob("*.pt")), "nothing downloaded next to the run"
    m = json.loads((out / "metrics.json").read_text())
    assert {"mAP50", "mAP50-95", "precision", "recall", "per_class", "epochs", "weights", "weights_sha256"} <= set(m)
    assert set(m["per_class"]) == set(CLASSES)
    for c in m["per_class"].values():
        assert {"instances", "precision", "recall", "mAP50", "mAP50-95"} <= set(c)
    val_instances = sum(c["instances"] for c in m["per_class"].values())
    assert val_instances == manifest["counts"]["val"]["boxes"]
    assert 0 <= m["mAP50-95"] <= m["mAP50"] <= 1
    assert len(m["epochs"]) == 1 and m["epochs"][0]["images"] == manifest["counts"]["train"]["images"]
    assert m["epochs"][0]["images_per_s"] > 0
    assert m["weights_sha256"] == sha256_file(out / m["weights"])
    card = json.loads((out / "model_card.json").read_text())
    assert card["data"]["task_ids_sha256"] == manifest["task_ids_sha256"]
    assert card["data"]["labels"] == CLASSES and card["data"]["project_id"] == 7
    assert card["training"]["ultralytics_args"]["epochs"] == 1
    assert card["training"]["ultralytics_args"]["model"] == "yolo11n.yaml"
    assert "mAP50" in (out / "model_card.md").read_text()
    assert "epoch 1/1" in output and "serve it: providers.grounder: {kind: student" in output


def test_student_grounder_loads_the_weights_and_returns_detections(trained):
    from pipeline.providers import registry
    from pipeline.providers.student import StudentGrounder
    out, _, _ = trained
    weights = out / "weights" / "best.pt"
    registry.providers.clear()
    g = registry.get_grounder(GrounderProvider(kind="student", model=str(weights), device="cpu"))
    assert registry.get_grounder(GrounderProvider(kind="student", model=str(weights), device="cpu")) is g
    assert g.describe()["classes"] == CLASSES and g.describe()["sha256"] == sha256_file(weights)
    im = scene((320, 200), [("Stop Sign", (20, 20, 120, 120)), ("Car", (150, 60, 300, 180))])
    assert isinstance(g.boxes(im, ["anything"]), Detections)
    # the same loading path without the default confidence floor: random 1-epoch weights score low
    dets = StudentGrounder.from_config(GrounderProvider(kind="student", model=str(weights), device="cpu"),
                                       min_score=0.0).boxes(im, ["anything"])
    assert len(dets) > 0
    assert set(dets.labels) <= set(CLASSES) and list(dets.queries) == list(dets.labels)
    assert np.all((dets.scores >= 0) & (dets.scores <= 1)) and dets.scores.max() > 0
    assert np.all(dets.xyxy[:, [0, 2]] <= 320 + 1e-3) and np.all(dets.xyxy[:, [1, 3]] <= 200 + 1e-3)
    assert np.all(dets.xyxy[:, 2] >= dets.xyxy[:, 0]) and np.all(dets.xyxy >= -1e-3)
    only_cars = g.boxes(im, ["car"])  # a query naming a class selects it
    assert set(only_cars.labels) <= {"Car"}
    registry.providers.clear()


def test_student_as_ground_stage_and_model_version_names_the_weights(trained, tmp_path):
    from pipeline.cascade import Pipeline
    from pipeline.model_version import model_version
    from pipeline.providers import registry
    from pipeline.providers.student import StudentGrounder
    out, _, _ = trained
    weights = tmp_path / "student.pt"
    shutil.copy(out / "weights" / "best.pt", weights)
    cfg = parse_project({"project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
                         "queries": ["octagonal red sign"],  # names no class: the student answers with all
                         "extra_labels": ["Car"], "stages": {"filter": False, "verify": False},
                         "thresholds": {"grounding": 0.0},
                         "providers": {"vlm": {"kind": "transformers", "model": "unused"},
                                       "grounder": {"kind": "student", "model": str(weights), "device": "cpu"}}})
    registry.providers.clear()
    # the student as the ground stage (no confidence floor: random 1-epoch weights score low)
    student = StudentGrounder.from_config(cfg.providers.grounder, min_score=0.0)
    res = Pipeline(cfg, grounder=student).run(scene((320, 200), [("Stop Sign", (20, 20, 120, 120))]))
    kept = res.detections.active()
    assert 0 < len(kept) <= cfg.thresholds.max_boxes and set(kept.labels) <= set(CLASSES)
    assert set(kept.stage) == {"ground"}

    version = model_version(cfg)
    assert version.endswith("+student-" + sha256_file(weights)[:12])
    fingerprint = cfg.fingerprint()
    shutil.copy(out / "weights" / "last.pt", weights)  # new weights at the same path
    assert sha256_file(weights) != sha256_file(out / "weights" / "best.pt")
    assert model_version(cfg) != version and cfg.fingerprint() != fingerprint
    g = registry.get_grounder(cfg.providers.grounder)
    g.boxes(scene((64, 64), []), [])
    assert g.sha256 == sha256_file(weights)  # the provider reloaded them too
    registry.providers.clear()


def test_ultralytics_leaves_the_process_torch_threads_alone(trained):
    """`import ultralytics` sets OMP_NUM_THREADS=1 and its predict sets torch to cores - 1 threads, process-wide:
    with the student in the backend, every other model (VLM verify, OWLv2) would lose its threads."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONPATH": str(REPO)}
    probe = ("import os; from pipeline.providers.yolo import ultralytics; ultralytics(); import torch; "
             "print(torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))")
    plain = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    after = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert after == [plain[0], "None"]

    import torch
    from ultralytics.utils import NUM_THREADS

    from pipeline.providers.student import StudentGrounder
    out, _, _ = trained
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(NUM_THREADS + 1)
        StudentGrounder(str(out / "weights" / "best.pt"), device="cpu").boxes(scene((64, 64), []), [])
        assert torch.get_num_threads() == NUM_THREADS + 1
    finally:
        torch.set_num_threads(before)


def test_ultralytics_leaves_pillow_alone():
    """`import ultralytics` patches PIL.Image.open to pip-install pi-heif on any unidentified file: a broken image
    must still be "not an image" in a process that serves the student, whatever imported ultralytics first."""
    import ultralytics  # noqa: F401 - imported directly first, as a third-party module might
    from PIL import Image

    from pipeline.images import ImageLoadError, open_image
    from pipeline.providers.yolo import ultralytics as load
    load()
    assert Image.open.__module__ == "PIL.Image"
    with pytest.raises(ImageLoadError, match="not an image"):
        open_image(b"not an image at all")


def test_the_default_pretrained_checkpoint_with_no_network_is_a_clean_error(yolo_export, tmp_path):
    """`label-factory train` with the default --model yolo11n.pt, no checkpoint on the machine and no network: one
    `error:` line naming --model yolo11n.yaml and where checkpoints go, no ConnectionError traceback."""
    data, _, _ = yolo_export
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    prefix = _no_network_prefix()
    if prefix:  # no network at all: ultralytics finds out by itself (its DNS check)
        env.pop("YOLO_OFFLINE", None)
    else:  # the conftest's YOLO_OFFLINE, and any request goes to a refused loopback port
        env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    p = subprocess.run(prefix + [sys.executable, "-m", "pipeline.cli", "train", "--data", str(data), "--out",
                                 str(tmp_path / "run"), "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "ConnectionError" not in p.stderr
    (error,) = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: --model yolo11n.pt: the checkpoint is not on this machine")
    assert "--model yolo11n.yaml (random initial weights" in error and "weights_dir" in error
    assert not list(tmp_path.glob("*.pt")) and not (tmp_path / "run").exists()


def test_a_checkpoint_download_that_fails_is_a_train_error(monkeypatch):
    """Online as far as ultralytics knows, but the download fails: the same clean error, with the reason."""
    from types import SimpleNamespace

    import ultralytics.utils

    from pipeline.distill import train as train_module

    def refuse(model):
        raise ConnectionError(f"Download failure for {model}. Retry limit reached.")
    monkeypatch.setattr(ultralytics.utils, "ONLINE", True)
    monkeypatch.delenv("YOLO_OFFLINE")
    with pytest.raises(TrainError, match=r"could not download it \(Download failure for yolo11s.pt.*"
                                         r"--model yolo11s.yaml"):
        train_module._yolo(SimpleNamespace(YOLO=refuse), "yolo11s.pt")
    with pytest.raises(TrainError, match="no such checkpoint file"):  # a path: nothing to download, none asked
        train_module._yolo(SimpleNamespace(YOLO=lambda m: pytest.fail("asked ultralytics")), "runs/gone/best.pt")


def test_missing_weights_are_a_clear_error(tmp_path):
    from pipeline.providers.base import ProviderError
    from pipeline.providers.student import StudentGrounder
    assert GrounderProvider(kind="student", model=str(tmp_path / "nope.pt")).identity() == "student-missing"
    with pytest.raises(ProviderError, match="no weights file"):
        StudentGrounder(str(tmp_path / "nope.pt"))


def test_interrupted_training_resumes_from_the_last_epoch(yolo_export, tmp_path):
    data, _, _ = yolo_export
    cfg = TrainConfig(data=data, out=tmp_path / "run", epochs=2, **TINY)

    class Killed(Exception):
        pass

    def die_after_first_save(trainer):
        raise Killed(f"killed after epoch {trainer.epoch + 1}")

    with pytest.raises(Killed, match="after epoch 1"):
        train(cfg, callbacks={"on_model_save": die_after_first_save})
    assert (tmp_path / "run" / "weights" / "last.pt").exists() and not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(TrainError, match="--resume"):
        train(cfg)  # a second start must not silently overwrite the run
    m = train(cfg, resume=True)
    assert [e["epoch"] for e in m["epochs"]] == [2]  # only the missing epoch ran
    rows = (tmp_path / "run" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + both epochs
    with pytest.raises(TrainError, match="finished"):
        train(cfg, resume=True)


def test_an_export_without_val_images_is_refused(tmp_path):
    from pipeline.distill.export import write_dataset
    from tests.pipeline.distill.conftest import fetcher
    exs, files, _ = make_examples(1)
    write_dataset(exs, tmp_path / "one", "yolo", fetcher(files), CLASSES, progress=False)
    with pytest.raises(TrainError, match="val split has no images"):
        train(TrainConfig(data=tmp_path / "one", out=tmp_path / "run", epochs=1, **TINY))
    with pytest.raises(TrainError, match="not a YOLO export"):
        train(TrainConfig(data=tmp_path, out=tmp_path / "run", epochs=1, **TINY))
