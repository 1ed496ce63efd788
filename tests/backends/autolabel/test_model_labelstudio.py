"""End to end: a real Label Studio 1.23 asks the backend (real gunicorn, tiny random-weight models)
for predictions; everything is checked through Label Studio's own API.

Random weights: thresholds are 0 so boxes survive; the test asserts the protocol and shapes, not quality."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml

from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.stack.processes import free_port
from tests.ls_helpers import (
    assert_one_rectangle_prediction,
    assert_score_column_sorts,
    project_with_broken_task,
    start_backend,
    tiny_project_yaml,
    wait_for_project_version,
)

pytestmark = pytest.mark.slow

AUTH = ("lf-backend", "s3cret-pass")
# Retrieve Predictions answers once the backend has predicted the selected tasks: wait as long as Label Studio
# itself waits for the backend (ML_TIMEOUT_PREDICT, 100 s), not the SDK's 60 s
RETRIEVE_WAIT = {"timeout": 120}


@pytest.fixture(scope="module")
def project_yaml(tmp_path_factory, tiny_qwen_dir, tiny_owlv2_dir) -> Path:
    return tiny_project_yaml(tmp_path_factory.mktemp("e2e-project") / "e2e-stop-signs.yaml", "e2e-stop-signs",
                             tiny_qwen_dir, tiny_owlv2_dir)


@pytest.fixture(scope="module")
def backend(label_studio, project_yaml, tmp_path_factory):
    """The backend under real gunicorn, authenticating to Label Studio with a personal access token."""
    work = tmp_path_factory.mktemp("e2e-backend")
    svc = start_backend(work, project_yaml, label_studio.url, label_studio.personal_access_token(), auth=AUTH,
                        BASIC_AUTH_USER=AUTH[0], BASIC_AUTH_PASS=AUTH[1], PREDICT_CONCURRENCY="2")
    try:
        # models loaded before Label Studio first asks: on a busy machine the load alone can outlast the first
        # request's deadline (this module is about Label Studio's protocol; a /predict during the load: test_model.py)
        svc.wait_http(f"{svc.url}/health", 300, ok=lambda r: r.ok and r.json().get("status") == "UP", auth=AUTH)
        yield type("Backend", (), {"url": svc.url, "log_path": svc.log_path, "log": lambda: svc.log_path.read_text()})
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def connected(label_studio, backend, project_yaml):
    """A project of 5 uploaded images and one broken task, the backend connected (basic auth on, interactive)
    and asked once through the Data Manager's *Retrieve Predictions* for every task."""
    ls = label_studio.client()
    ls_log_start = len(label_studio.log_path.read_text())
    cfg = load_project(project_yaml)
    project, good, broken = project_with_broken_task(label_studio, "e2e backend", labeling_config(cfg), 5)
    ml = ls.ml.create(project=project.id, url=backend.url, title="label-factory", is_interactive=True,
                      auth_method="BASIC_AUTH", basic_auth_user=AUTH[0], basic_auth_pass=AUTH[1])
    ml = ls.ml.get(ml.id)
    assert ml.state == "CO", (ml.state, ml.error_message)
    version = ml.model_version
    assert version.startswith("e2e-stop-signs-") and cfg.fingerprint() in version
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": True, "excluded": []}, request_options=RETRIEVE_WAIT)
    return SimpleNamespace(project=project, good=good, broken=broken, ml=ml, version=version, labels=set(cfg.labels()),
                           ls_log_start=ls_log_start)


def test_retrieve_predictions_stores_one_prediction_per_task(label_studio, backend, connected):
    ls, c = label_studio.client(), connected
    for t in c.good:
        assert_one_rectangle_prediction(ls, t.id, c.version, c.labels)
    assert list(ls.predictions.list(task=c.broken.id)) == []
    log = backend.log()
    # Label Studio 1.23 answers an upload path with no file behind it with 500 (UploadedFileResponse)
    assert f"task {c.broken.id}: no prediction" in log and "does-not-exist.jpg: HTTP 500" in log
    assert label_studio.token not in log
    # images fetched the way that works the first time: Label Studio's storage proxy, which answers 400 for
    # files on its own disk, is asked only after /data/upload/ failed (the broken task)
    proxied = [ln for ln in label_studio.log_path.read_text()[c.ls_log_start:].splitlines()
               if "GET /storage-data/" in ln]
    assert all("does-not-exist.jpg" in ln for ln in proxied), proxied
    # without the basic auth credentials the backend refuses, as JSON
    r = requests.post(f"{backend.url}/predict", json={"tasks": []}, timeout=10)
    assert r.status_code == 401 and r.json()["detail"]


def test_project_model_version_follows_the_backend_and_the_score_column_sorts(label_studio, connected):
    # Label Studio made the project's model_version the backend's title on connect, and scores only predictions
    # of the project's version: the backend makes it the version it answered, so the column fills and sorts
    ls, c = label_studio.client(), connected
    scores = {t.id: assert_one_rectangle_prediction(ls, t.id, c.version, c.labels).score for t in c.good}
    assert wait_for_project_version(label_studio, c.project.id, c.version) == c.version
    assert_score_column_sorts(label_studio, c.project.id, scores)


def test_interactive_context_prompt_and_drawn_rectangle(label_studio, connected):
    c = connected
    # the text prompt Label Studio sends as context ...
    r = requests.post(f"{label_studio.url}/api/ml/{c.ml.id}/interactive-annotating", headers=label_studio.headers(),
                      json={"task": c.good[0].id, "context": {"result": [
                          {"from_name": "prompt", "to_name": "image", "type": "textarea",
                           "value": {"text": ["stop sign"]}}]}}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["model_version"] == c.version and data["result"]
    assert {reg["value"]["rectanglelabels"][0] for reg in data["result"]} == {"Stop Sign"}

    # ... and a rectangle the user drew: answered with its verify score
    drawn = {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0, "rectanglelabels": ["Other"]}
    r = requests.post(f"{label_studio.url}/api/ml/{c.ml.id}/interactive-annotating", headers=label_studio.headers(),
                      json={"task": c.good[1].id, "context": {"result": [
                          {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": drawn,
                           "original_width": 96, "original_height": 64}]}}, timeout=60)
    assert r.status_code == 200, r.text
    (region,) = r.json()["data"]["result"]
    assert region["value"]["rectanglelabels"] == ["Other"]
    assert region["value"]["x"] == pytest.approx(10.0) and region["value"]["width"] == pytest.approx(30.0)
    assert 0 <= region["score"] <= 1


def test_retrieve_again_asks_only_for_tasks_without_the_current_version(label_studio, backend, project_yaml,
                                                                       connected):
    """Last in this module: it moves the project to another model_version (and back in the YAML)."""
    ls, c = label_studio.client(), connected
    # "Retrieve predictions" again: Label Studio sends only the task without a prediction of the backend's
    # current model_version (MLBackend.predict_tasks), yet reports every selected task as "retrieved"
    retrieve = {"id": "retrieve_tasks_predictions", "project": c.project.id,
                "selected_items": {"all": True, "excluded": []}, "request_options": RETRIEVE_WAIT}
    ls.actions.create(**retrieve)
    assert _last_batch(backend) == f"project {c.project.id}: 1 task(s) asked"

    # a YAML change is a new model_version: the same button predicts every task again
    original = project_yaml.read_text()
    changed = yaml.safe_load(original)
    changed["thresholds"]["max_boxes"] = 2
    try:
        project_yaml.write_text(yaml.safe_dump(changed))
        ls.actions.create(**retrieve)
        new_version = ls.ml.get(c.ml.id).model_version
        assert new_version != c.version
        assert _last_batch(backend) == f"project {c.project.id}: {len(c.good) + 1} task(s) asked"
        for t in c.good:
            assert {p.model_version for p in ls.predictions.list(task=t.id)} == {c.version, new_version}
        assert wait_for_project_version(label_studio, c.project.id, new_version) == new_version
        assert_score_column_sorts(label_studio, c.project.id, {
            t.id: next(p.score for p in ls.predictions.list(task=t.id) if p.model_version == new_version)
            for t in c.good})
    finally:
        project_yaml.write_text(original)


def _last_batch(backend) -> str:
    """``project <id>: <n> task(s) asked`` of the last batch prediction the backend logged."""
    lines = [ln for ln in backend.log().splitlines() if "batch: project " in ln]
    return lines[-1].split("batch: ", 1)[1].split(",")[0]


def test_backend_takes_the_vlm_from_lf_overrides(tmp_path, mlx_vlm_server, tiny_owlv2_dir):
    """docker-compose points the backend at its model server with LF_VLM_URL: the YAML's URL is dead, the
    environment's is a real mlx_vlm.server (planted P(yes)), and the backend under gunicorn answers from it."""
    from pipeline.model_version import model_version
    from pipeline.tiny.qwen import KNOWN_P_YES
    from tests.doubles.images import jpeg_bytes
    from tests.doubles.servers import FileServer

    dead = f"http://127.0.0.1:{free_port()}/v1"
    project = tmp_path / "compose.yaml"
    project.write_text(yaml.safe_dump({
        "project_name": "compose-signs", "target_object": "stop sign", "label": "Stop Sign",
        "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 2},
        "providers": {"vlm": {"kind": "openai", "url": dead, "model": "not-served", "retries": 0, "timeout": 5},
                      "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}}}))
    files = FileServer()
    files.files["/data/upload/1/a.jpg"] = jpeg_bytes((96, 64))
    overrides = {"LF_VLM_URL": str(mlx_vlm_server), "LF_VLM_MODEL": mlx_vlm_server.model}
    svc = None
    try:
        svc = start_backend(tmp_path, project, files.url, "0123456789abcdef0123456789abcdef01234567", THREADS="2",
                            **overrides)
        url = svc.url
        version = requests.post(f"{url}/setup", json={"project": "1.1", "schema": labeling_config(load_project(
            project, environ={}))}, timeout=30).json()["model_version"]
        assert version == model_version(load_project(project, environ=overrides))
        assert version != model_version(load_project(project, environ={}))  # the models it really runs
        r = requests.post(f"{url}/predict", json={"project": "1.1", "tasks": [{"id": 1, "data": {
            "image": "/data/upload/1/a.jpg"}}], "label_config": labeling_config(load_project(project, environ={}))},
                          timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body.get("errors"), body["errors"]
        (pred,) = body["results"]
        assert pred["model_version"] == version and pred["result"]
        assert all(reg["score"] == pytest.approx(KNOWN_P_YES, abs=1e-3) for reg in pred["result"])  # verify's P(yes)
        assert mlx_vlm_server.log.read_text().count("POST /v1/chat/completions") >= 2  # filter + verify
    finally:
        if svc is not None:
            svc.stop()
        files.close()
