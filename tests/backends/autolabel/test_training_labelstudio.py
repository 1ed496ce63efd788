"""Start Training end to end: a real Label Studio 1.23 sends START_TRAINING (its Start Training, `ml.train`) to the
backend under real gunicorn, which trains a student of seconds in a background process (1 epoch, 64 px, from
yolo11n.yaml), promotes it only if its held-out AP beats the served one's, and then serves it under a new
model_version; one training at a time per project; a killed training leaves the served weights and version."""
from __future__ import annotations

import pytest
import requests

from pipeline.tiny.student import whole_image_student
from pipeline.weights import sha256_file
from tests.ls_helpers import start_backend
from tests.training_helpers import (
    kill_training,
    reviewed_project,
    student_yaml,
    tiny_training_env,
    wait_for_training,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    work = tmp_path_factory.mktemp("training-backend")
    first = student_yaml(work / "first.yaml", "train-e2e", work / "first" / "student.pt")
    svc = start_backend(work, first, label_studio.url, label_studio.token, PROJECTS_DIR=str(work),
                        **tiny_training_env(work / "yolo-config"))
    svc.work = work
    started = []
    svc.started = started
    try:
        yield svc
    finally:
        for status in started:
            kill_training(status)
        svc.stop()


def _version(backend, project) -> str:
    r = requests.post(f"{backend.url}/setup", json={"project": f"{project.id}.0", "schema": project.label_config},
                      timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def _webhook(backend, project) -> dict:
    """START_TRAINING as Label Studio sends it (label_studio/ml/api_connector.py ``train``), answered directly."""
    r = requests.post(f"{backend.url}/webhook", timeout=30, json={
        "action": "START_TRAINING", "project": {"id": project.id, "label_config": project.label_config}})
    assert r.status_code == 201, r.text
    return r.json()["result"]["training"]


def _predicted_versions(label_studio, project) -> set:
    ls = label_studio.client()
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []})
    return {p.model_version for t in ls.tasks.list(project=project.id, page_size=100)
            for p in ls.predictions.list(task=t.id)}


def test_start_training_promotes_a_student_and_predictions_carry_its_version(label_studio, backend):
    project, tasks = reviewed_project(label_studio, "start training", backend.work / "first.yaml")
    ls = label_studio.client()
    ml = ls.ml.create(project=project.id, url=backend.url, title="label-factory")
    before = _version(backend, project)
    assert before.endswith("+student-missing")

    ls.ml.train(id=ml.id)  # Label Studio's own Start Training: it posts START_TRAINING to /webhook
    status = wait_for_training(f"{backend.url}/metrics", project.id)
    backend.started.append(status)

    assert status["state"] == "promoted", status
    o = status["outcome"]
    assert o["why"].startswith("nothing is served yet") and o["model_version_before"] == before
    assert status["epoch"] == status["epochs"] == 1 and status["images"]["test"] > 0
    after = _version(backend, project)
    assert after == o["model_version"] != before and after.endswith(f"+student-{o['weights_sha256'][:12]}")
    assert sha256_file(backend.work / "first" / "student.pt") == o["weights_sha256"]
    assert _predicted_versions(label_studio, project) == {after}
    assert "Start Training for project %d: training process" % project.id in backend.log_path.read_text()


def test_one_training_at_a_time_and_a_killed_one_changes_nothing(label_studio, backend):
    weights = whole_image_student(backend.work / "served" / "student.pt", ["Stop Sign", "Other"])
    project_yaml = student_yaml(backend.work / "served.yaml", "train-kill", weights)
    project, _ = reviewed_project(label_studio, "kill training", project_yaml)
    ls = label_studio.client()
    ls.ml.create(project=project.id, url=backend.url, title="label-factory",
                 extra_params={"project_config": project_yaml.name})
    digest = sha256_file(weights)
    r = requests.post(f"{backend.url}/setup", timeout=30, json={
        "project": f"{project.id}.0", "schema": project.label_config,
        "extra_params": {"project_config": project_yaml.name}})
    assert r.status_code == 200, r.text
    before = r.json()["model_version"]
    assert before.endswith(f"+student-{digest[:12]}")

    first = _webhook(backend, project)
    assert first["state"] == "started", first
    backend.started.append(first)
    second = _webhook(backend, project)
    assert second["state"] == "already training" and second["status"]["pid"] == first["pid"], second
    running = wait_for_training(f"{backend.url}/metrics", project.id, states=("training",), timeout=300)
    assert running["pid"] == first["pid"]
    assert len(list(backend.work.glob(f"model-dir/training/{project.id}/runs/*"))) == 1, "one run, not two"

    kill_training(running)  # SIGKILL mid-training
    status = wait_for_training(f"{backend.url}/metrics", project.id, states=("failed",), timeout=60)
    assert status["state"] == "failed" and "killed by SIGKILL while training" in status["error"], status
    assert sha256_file(weights) == digest
    assert not [p for p in weights.parent.iterdir() if p != weights], "nothing written next to the served weights"
    r = requests.post(f"{backend.url}/setup", timeout=30, json={"project": f"{project.id}.0",
                                                                 "schema": project.label_config})
    assert r.json()["model_version"] == before

    # the lock went with the process: the next Start Training runs, and its student does not beat the served one
    again = _webhook(backend, project)
    assert again["state"] == "started" and again["pid"] != first["pid"], again
    backend.started.append(again)
    status = wait_for_training(f"{backend.url}/metrics", project.id)
    assert status["state"] == "not promoted" and "does not beat the served" in status["outcome"]["why"], status
    assert sha256_file(weights) == digest
    r = requests.post(f"{backend.url}/setup", timeout=30, json={"project": f"{project.id}.0",
                                                                 "schema": project.label_config})
    assert r.json()["model_version"] == before
