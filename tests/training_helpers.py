"""Shared steps of the training-from-Label-Studio tests: a student project YAML, a real Label Studio project whose
tasks are reviewed (one large box each), the settings that keep a training to seconds, and waiting for a
training's outcome in the backend's /metrics."""
from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import requests
import yaml
from PIL import Image, ImageDraw

from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config

SIZE = (96, 64)
BOX = (8, 6, 88, 58)  # about 68 % of the image: a box covering the whole image overlaps it at IoU 0.68
TASKS = 12


def student_yaml(path: Path, name: str, weights: Path) -> Path:
    """A project served by a student alone (filter and verify off), whose weights are ``weights``."""
    path.write_text(yaml.safe_dump({
        "project_name": name, "target_object": "stop sign", "label": "Stop Sign", "extra_labels": ["Other"],
        "stages": {"filter": False, "ground": True, "verify": False, "identify": False},
        "thresholds": {"grounding": 0.0, "max_boxes": 3},
        "providers": {"grounder": {"kind": "student", "model": str(weights), "device": "cpu"}},
    }))
    return path


def tiny_training_env(config_dir: Path) -> dict:
    """LF_TRAIN_* for a training of seconds (1 epoch, 64 px, from yolo11n.yaml) and ultralytics kept offline."""
    return {"LF_TRAIN_MODEL": "yolo11n.yaml", "LF_TRAIN_EPOCHS": "1", "LF_TRAIN_IMGSZ": "64", "LF_TRAIN_BATCH": "4",
            "LF_TRAIN_DEVICE": "cpu", "LF_TRAIN_WORKERS": "0", "LF_TRAIN_SPLIT": "0.4,0.2,0.4",
            "YOLO_CONFIG_DIR": str(config_dir), "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def scene_jpeg(seed: int) -> bytes:
    im = Image.new("RGB", SIZE, (30 + 15 * seed % 200, 90, 120))
    jitter = seed % 3
    ImageDraw.Draw(im).rectangle((BOX[0] + jitter, BOX[1], BOX[2] - 1 - jitter, BOX[3] - 1), fill=(210, 20, 20))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def region(box=BOX, size=SIZE, label="Stop Sign") -> dict:
    w, h = size
    return {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": w,
            "original_height": h, "value": {"x": box[0] / w * 100, "y": box[1] / h * 100,
                                            "width": (box[2] - box[0]) / w * 100,
                                            "height": (box[3] - box[1]) / h * 100, "rotation": 0,
                                            "rectanglelabels": [label]}}


def reviewed_project(label_studio, title: str, project_yaml: Path, n: int = TASKS):
    """A Label Studio project with ``n`` uploaded images, each with a submitted annotation (one large box)."""
    ls = label_studio.client()
    project = ls.projects.create(title=title, label_config=labeling_config(load_project(project_yaml)))
    files = [(f"file{i}", (f"img{i}.jpg", scene_jpeg(i), "image/jpeg")) for i in range(n)]
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                      headers=label_studio.headers(), timeout=60)
    assert r.status_code == 201, r.text
    tasks = list(ls.tasks.list(project=project.id, page_size=100))
    assert len(tasks) == n
    for t in tasks:
        ls.annotations.create(id=t.id, result=[region()], was_cancelled=False)
    return project, tasks


def wait_for_training(metrics_url: str, project_id, states=("promoted", "not promoted", "failed", "interrupted"),
                      timeout: float = 600, auth=None) -> dict:
    """The project's training status from the backend's /metrics once its state is one of ``states``."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = requests.get(metrics_url, timeout=10, auth=auth).json().get("training", {}).get(str(project_id))
        if status and status.get("state") in states:
            return status
        time.sleep(1)
    raise AssertionError(f"no training outcome within {timeout:.0f} s; last status {status}")


def kill_training(status: dict) -> None:
    """Stop a training process a test left running (the backend starts them in their own session)."""
    pid = (status or {}).get("pid")
    if pid:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
