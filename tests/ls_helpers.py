"""Shared steps of the end-to-end tests against a real Label Studio: a tiny-models project YAML, the backend
under real gunicorn, a project with uploaded images plus one broken task, the checks every stored
RectangleLabels prediction must pass, and the Data Manager's Prediction score column."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.labelstudio import lsapi
from pipeline.stack.processes import Service, free_port
from tests import REPO
from tests.doubles.images import IMAGE_SIZE, sign_jpeg


def tiny_project_yaml(path: Path, name: str, tiny_qwen_dir, tiny_owlv2_dir, max_boxes: int = 3) -> Path:
    """A stop-sign project on the tiny random-weight models, every gate open so boxes survive."""
    path.write_text(yaml.safe_dump({
        "project_name": name, "target_object": "stop sign", "label": "Stop Sign",
        "extra_labels": ["Other"], "falcon_queries": ["stop sign"],
        "stages": {"filter": True, "ground": True, "verify": True, "identify": False},
        "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": max_boxes},
        "providers": {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                      "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}},
    }))
    return path


def start_backend(work: Path, project_yaml: Path, label_studio_url: str, api_key: str, auth=None, **env) -> Service:
    """The backend under real gunicorn, by the documented command
    (``gunicorn -c python:backends.gunicorn_conf backends._wsgi:app``), answering /health; ``.url`` is its URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1",
           "THREADS": "4", "LOG_LEVEL": "INFO", "MODEL_DIR": str(work / "model-dir"),
           "PROJECT_CONFIG": str(project_yaml), "LABEL_STUDIO_URL": label_studio_url, "LABEL_STUDIO_API_KEY": api_key,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    svc = Service("ML backend", [sys.executable, "-m", "gunicorn", "-c", "python:backends.gunicorn_conf",
                                 "backends._wsgi:app"], env, work / "backend.log", cwd=REPO)
    svc.url = f"http://127.0.0.1:{port}"
    try:
        svc.wait_http(f"{svc.url}/health", 60, auth=auth)
    except BaseException:
        svc.stop()
        raise
    return svc


def project_with_broken_task(label_studio, title: str, label_config: str, n_images: int):
    """A project with ``n_images`` uploaded images (one multipart request) and one task whose image
    URL is broken; returns (project, good tasks, broken task)."""
    ls = label_studio.client()
    project = ls.projects.create(title=title, label_config=label_config)
    files = [(f"file{i}", (f"img{i}.jpg", sign_jpeg(i), "image/jpeg")) for i in range(n_images)]
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                      headers=label_studio.headers(), timeout=60)
    assert r.status_code == 201, r.text
    broken_url = f"/data/upload/{project.id}/does-not-exist.jpg"
    ls.projects.import_tasks(project.id, request=[{"image": broken_url}])
    tasks = list(lsapi.items(ls.tasks.list, project=project.id))
    assert len(tasks) == n_images + 1
    broken = next(t for t in tasks if t.data["image"] == broken_url)
    return project, [t for t in tasks if t.id != broken.id], broken


def assert_one_rectangle_prediction(ls, task_id: int, version: str, labels: set, size=IMAGE_SIZE):
    """The task has exactly one prediction, of ``version``, with non-empty RectangleLabels results
    named after the config, in percent of the original size, and scores in [0, 1]."""
    preds = list(ls.predictions.list(task=task_id))
    assert len(preds) == 1, (task_id, preds)
    p = preds[0]
    assert p.model_version == version
    assert p.result, f"task {task_id}: empty prediction (thresholds are 0, boxes should survive)"
    assert p.score is not None and 0 <= p.score <= 1
    for region in p.result:
        assert region["from_name"] == "label" and region["to_name"] == "image"
        assert region["type"] == "rectanglelabels"
        assert (region["original_width"], region["original_height"]) == size
        v = region["value"]
        assert v["rectanglelabels"] and set(v["rectanglelabels"]) <= labels
        assert 0 <= v["x"] <= 100 and 0 <= v["y"] <= 100
        assert 0 < v["width"] and v["x"] + v["width"] <= 100 + 1e-6
        assert 0 < v["height"] and v["y"] + v["height"] <= 100 + 1e-6
        assert 0 <= region["score"] <= 1
    return p


def dm_tasks(label_studio, project_id: int, ordering: str = "") -> list[dict]:
    """The Data Manager's rows (what its columns show), sorted by a column when ``ordering`` names one
    (``"-tasks:predictions_score"``), as the Data Manager asks for them."""
    params = {"project": project_id, "fields": "all", "page_size": 100}
    if ordering:
        params["query"] = json.dumps({"ordering": [ordering]})
    r = requests.get(f"{label_studio.url}/api/tasks", params=params, headers=label_studio.headers(), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]


def wait_for_project_version(label_studio, project_id: int, version: str, timeout: float = 30) -> str:
    """The project's model_version once it is ``version`` (or whatever it is after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        current = label_studio.client().projects.get(id=project_id).model_version
        if current == version or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


def assert_score_column_sorts(label_studio, project_id: int, scored: dict) -> None:
    """The Data Manager's Prediction score column shows ``scored`` (task id -> prediction score) and sorts by it."""
    rows = {t["id"]: t["predictions_score"] for t in dm_tasks(label_studio, project_id)}
    assert {i: s for i, s in rows.items() if s is not None} == pytest.approx(scored), rows
    for ordering, reverse in (("tasks:predictions_score", False), ("-tasks:predictions_score", True)):
        order = [t["id"] for t in dm_tasks(label_studio, project_id, ordering) if t["id"] in scored]
        assert [scored[i] for i in order] == sorted(scored.values(), reverse=reverse), (ordering, order)


def assert_valid_prediction(label_interface, results: list, score=None) -> None:
    """label-studio-sdk's own check of a prediction against the labeling config it was made for."""
    pred = {"result": results} if score is None else {"result": results, "score": score}
    errors = label_interface.validate_prediction(pred, return_errors=True)
    assert errors == [], errors


def log_lines(label_studio) -> int:
    """How many lines Label Studio's log has now (to read only what a step adds)."""
    return len(label_studio.log_path.read_text(errors="replace").splitlines())


def task_pages_refused(label_studio, since: int) -> list[str]:
    """Task-list requests Label Studio answered 404 since log line ``since``: pages asked for past the last."""
    lines = label_studio.log_path.read_text(errors="replace").splitlines()[since:]
    return [line for line in lines if '"GET /api/tasks' in line and '" 404 ' in line]
