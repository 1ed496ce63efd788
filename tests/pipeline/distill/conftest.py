"""Distill tests: ultralytics kept offline and out of $HOME, plus a small constructed data set.

``YOLO_CONFIG_DIR`` (ultralytics settings, fonts) goes to a session temp dir, ``YOLO_OFFLINE``
makes ultralytics' online check say no and ``YOLO_AUTOINSTALL`` stops it pip-installing anything.
Set before the first ``import ultralytics`` (the distill modules import it lazily)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.distill.reviewed import Example
from pipeline.images import open_image
from tests.doubles.images import jpeg

CLASSES = ["Stop Sign", "Car"]
COLORS = {"Stop Sign": (220, 20, 20), "Car": (20, 20, 220)}


@pytest.fixture(scope="session", autouse=True)
def _ultralytics_offline(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_AUTOINSTALL", "false")
        yield


def scene(size, boxes, seed=0) -> Image.Image:
    """A noisy background with filled rectangles ``boxes`` = [(label, (x1, y1, x2, y2)), ...] in pixels."""
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(60, 140, (size[1], size[0], 3), dtype=np.uint8))
    d = ImageDraw.Draw(im)
    for label, (x1, y1, x2, y2) in boxes:
        d.rectangle((x1, y1, x2 - 1, y2 - 1), fill=COLORS[label])
    return im





def percent(xyxy, width, height) -> dict:
    from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
    return xyxy_to_ls(xyxy, width, height)


def rect(label, xyxy, size, score=None, from_name="label", value=None) -> dict:
    """A RectangleLabels region as Label Studio stores it, around pixel ``xyxy`` of a ``size`` image (or with the
    rectangle ``value`` given)."""
    r = {"from_name": from_name, "to_name": "image", "type": "rectanglelabels", "original_width": size[0],
         "original_height": size[1],
         "value": {**(value if value is not None else percent(xyxy, *size)), "rectanglelabels": [label]}}
    if score is not None:
        r["score"] = score
    return r


def make_examples(n: int = 8, size=(96, 64)):
    """``n`` reviewed examples (task ids 101..) with one or two boxes each, their JPEG bytes, and the truth:
    task id -> [(label, pixel xyxy)]."""
    exs, files, truth = [], {}, {}
    for i in range(n):
        tid = 101 + i
        boxes = [("Stop Sign", (8 + i, 6, 40 + i, 38))]
        if i % 2:
            boxes.append(("Car", (50, 20 + i, 90, 60)))
        files[f"/data/upload/1/{tid}.jpg"] = jpeg(scene(size, boxes, seed=i))
        truth[tid] = boxes
        regions = [rect(lab, b, size) for lab, b in boxes]
        exs.append(Example(tid, f"/data/upload/1/{tid}.jpg", "annotation", 1000 + i, regions))
    return exs, files, truth


def fetcher(files: dict):
    """(url, task_id) -> EXIF-corrected RGB image, decoded by the backend's own loader (pipeline/images.py)."""
    def fetch(url, task_id):
        if url not in files:
            raise FileNotFoundError(f"{url}: no such image")
        return open_image(files[url])
    return fetch


@pytest.fixture(scope="session")
def yolo_export(tmp_path_factory):
    """A YOLO export of 8 constructed examples (shared by the training tests)."""
    from pipeline.distill.export import write_dataset
    exs, files, truth = make_examples(8)
    out = tmp_path_factory.mktemp("export") / "yolo"
    source = {"label_studio_url": "http://127.0.0.1:8080", "project_id": 7, "project_title": "constructed"}
    manifest = write_dataset(exs, out, "yolo", fetcher(files), CLASSES, source=source, progress=False)
    return out, manifest, truth
