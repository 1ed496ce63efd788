"""A project's training from a real Label Studio (pipeline/distill/job.py, runs.py): export the reviewed tasks,
train a student of seconds (1 epoch, 64 px, from yolo11n.yaml), promote it only if its held-out AP beats the
served one's, one training at a time per project, and what /metrics shows of it."""
import json
import os
import time

import pytest

from pipeline.config import load_project
from pipeline.distill import runs
from pipeline.distill.job import TrainingError, run_training
from pipeline.labelstudio.media import fetch_image
from pipeline.model_version import model_version
from pipeline.providers.student import StudentGrounder
from pipeline.tiny.student import whole_image_student
from pipeline.weights import sha256_file
from tests.training_helpers import reviewed_project, student_yaml, tiny_training_env

CLASSES = ["Stop Sign", "Other"]


@pytest.fixture(autouse=True)
def _tiny_training(monkeypatch, tmp_path):
    for k, v in tiny_training_env(tmp_path / "yolo-config").items():
        monkeypatch.setenv(k, v)


def _train(label_studio, project_yaml, project_id, **kw):
    def fetch(url, task_id):
        return fetch_image(url, task_id, label_studio_url=label_studio.url, api_key=label_studio.token)
    return run_training(project_yaml, project_id, label_studio.client(), label_studio.url, fetch, **kw)


def test_the_first_student_is_promoted_and_named_by_the_model_version(label_studio, tmp_path):
    weights = tmp_path / "served" / "student.pt"
    project_yaml = student_yaml(tmp_path / "first.yaml", "train-first", weights)
    project, tasks = reviewed_project(label_studio, "train first", project_yaml)
    before = model_version(load_project(project_yaml))
    assert before.endswith("+student-missing")

    o = _train(label_studio, project_yaml, project.id)

    assert o["promoted"] and o["why"].startswith("nothing is served yet"), o
    assert sum(o["images"].values()) == len(tasks) and o["candidate"]["images"] == o["images"]["test"] > 0
    assert sha256_file(weights) == o["weights_sha256"]
    after = model_version(load_project(project_yaml))
    assert after == o["model_version"] != before and after.endswith(f"+student-{o['weights_sha256'][:12]}")
    assert StudentGrounder(str(weights), device="cpu").names == dict(enumerate(CLASSES))  # the project's labels
    status = runs.read_status(project.id)
    assert status["state"] == "promoted" and status["epoch"] == status["epochs"] == 1 and status["pid"] == os.getpid()
    assert set(status["losses"]) == {"box_loss", "cls_loss", "dfl_loss"} and status["outcome"] == o
    assert runs.metrics()[str(project.id)]["state"] == "promoted"
    run = status["run"]
    assert json.loads((tmp_path / run / "outcome.json").read_text()) == json.loads(json.dumps(o))
    assert not [p for p in weights.parent.iterdir() if p.name != weights.name], "no temp file next to the weights"


def test_a_student_that_does_not_beat_the_served_one_is_not_promoted(label_studio, tmp_path):
    weights = whole_image_student(tmp_path / "served" / "student.pt", CLASSES)  # AP50:95 0.4 on these tasks
    project_yaml = student_yaml(tmp_path / "worse.yaml", "train-worse", weights)
    project, _ = reviewed_project(label_studio, "train worse", project_yaml)
    digest, before = sha256_file(weights), model_version(load_project(project_yaml))

    o = _train(label_studio, project_yaml, project.id)

    assert not o["promoted"] and "does not beat the served" in o["why"], o
    assert o["served"]["ap50_95"] == pytest.approx(0.4) and o["candidate"]["ap50_95"] < o["served"]["ap50_95"]
    assert sha256_file(weights) == digest and model_version(load_project(project_yaml)) == before == o["model_version"]
    assert runs.read_status(project.id)["state"] == "not promoted"


def test_one_training_at_a_time_per_project(tmp_path):
    weights = tmp_path / "student.pt"
    project_yaml = student_yaml(tmp_path / "busy.yaml", "train-busy", weights)
    fd = runs.try_lock(4242)  # a training of project 4242 runs (its process holds the lock)
    try:
        assert runs.try_lock(4242) is None and runs.held(4242)
        runs.write_status(4242, {"state": "training", "pid": 1, "epoch": 3, "epochs": 10})
        answer = runs.start(project_yaml, 4242)
        assert answer["state"] == runs.ALREADY and answer["status"]["epoch"] == 3
        assert list((runs.state_dir(4242)).glob("runs/*")) == [], "nothing started"
        with pytest.raises(TrainingError, match="already training"):
            run_training(project_yaml, 4242, None, "", None)
        assert runs.metrics()["4242"]["state"] == "training"
    finally:
        os.close(fd)
    assert not runs.held(4242)
    shown = runs.metrics()["4242"]  # the process is gone without a word
    assert shown["state"] == "interrupted" and "served student is unchanged" in shown["error"]


def test_a_project_that_serves_no_student_cannot_start_one(tmp_path):
    project_yaml = tmp_path / "cascade.yaml"
    project_yaml.write_text("project_name: cascade\ntarget_object: stop sign\n")
    with pytest.raises(TrainingError, match="serves no student.*route.student"):
        runs.start(project_yaml, 7)
    assert not runs.state_dir(7).exists()


def test_a_killed_training_process_is_reported_by_the_waiter(tmp_path, monkeypatch):
    """runs.start's waiter: a process that dies in a running state is recorded as failed, with how it died."""
    import subprocess
    import sys
    import threading
    monkeypatch.setattr(runs, "read_status", runs.read_status)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runs.write_status(5, {"state": "training", "pid": proc.pid, "epoch": 1, "epochs": 9})
    waiter = threading.Thread(target=runs._wait, args=(proc, 5, tmp_path / "train.log"))
    waiter.start()
    time.sleep(0.2)
    proc.kill()
    waiter.join(10)
    status = runs.read_status(5)
    assert status["state"] == "failed" and "killed by SIGKILL while training" in status["error"]


def test_train_takes_an_export_or_a_project_not_both(tmp_path, capsys):
    from pipeline.cli import main
    project_yaml = student_yaml(tmp_path / "p.yaml", "train-cli", tmp_path / "student.pt")
    assert main(["train", "--project", str(project_yaml), "--data", str(tmp_path)]) == 2
    assert "give one or the other" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path)]) == 2
    assert "give --data and --out" in capsys.readouterr().err
