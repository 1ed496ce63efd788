"""The ``student`` grounder: a YOLO detector trained by ``label-factory train`` on reviewed labels.

``providers.grounder: {kind: student, model: runs/student/weights/best.pt, device: auto}``

It answers ``boxes(image, queries)`` with the detector's own confidences (ultralytics predict,
its class-aware NMS, every box with confidence >= ``min_score``; the ground stage then applies
``thresholds.grounding``, per-label NMS and ``max_boxes``). Class names are the Label Studio labels
the export wrote to data.yaml, so each box's label and query are its class name.

Queries: a query that names a class (case-insensitive) selects that class; when no query names a
class (e.g. the YAML's text queries such as "octagonal red sign"), every class is returned. The
student needs no text: it detects what it was trained on.

Weights load once per process (registry); if the file at ``model`` is replaced, the next call
reloads it (model_version, which names the weights by content hash, changes with it).

``zoom`` (``providers.grounder.zoom`` / ``route.zoom``; 0: off): each box scoring >= ``ZOOM_MIN_SCORE`` is
refitted on a window ``zoom`` times its longer side (at least the student's input size) around it, all
windows of an image in one batch (pipeline/providers/zoom.py)."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from pipeline.detections import Detections
from pipeline.providers import zoom
from pipeline.providers.base import Grounder, ProviderError
from pipeline.providers.yolo import keep_torch_threads, torch_device, ultralytics
from pipeline.weights import weights_sha256

ZOOM_MIN_SCORE = 0.1  # boxes under this are not refitted (the route's default floor drops them anyway)


def student_dtype(device: str, setting: str = "auto") -> str:
    """fp16 or fp32: ultralytics runs a model in half precision on CUDA only (``half=True``), so a student
    runs fp16 on a GPU whose choice is not fp32 (bf16 GPUs included), and fp32 elsewhere."""
    if not device.replace(",", "").isdigit():  # ultralytics' CUDA devices are "0", "0,1", ...
        return "fp32"
    from pipeline.hardware import choose_dtype
    return "fp32" if choose_dtype(f"cuda:{device.split(',')[0]}", setting).dtype == "fp32" else "fp16"


class StudentGrounder(Grounder):
    name = "student"
    square_input = True  # letterboxed: longest side to imgsz, padded to imgsz x imgsz

    def __init__(self, weights: str, device: str = "auto", min_score: float = 0.001, dtype: str = "auto",
                 zoom: float = 0.0):
        self.path = Path(weights).expanduser()
        self.min_score = float(min_score)
        self.zoom = float(zoom)  # > 0: boxes refitted on a window this many times their side (providers/zoom.py)
        self._lock = threading.Lock()
        self._stat: Optional[tuple] = None
        self.device = torch_device(device)
        self.dtype = student_dtype(self.device, dtype)
        self._load()

    @classmethod
    def from_config(cls, cfg, min_score: float = 0.001):
        return cls(cfg.model, device=cfg.device, min_score=min_score, dtype=cfg.dtype, zoom=cfg.zoom)

    def _file_stat(self) -> Optional[tuple]:
        try:
            st = os.stat(self.path)
            return st.st_size, st.st_mtime_ns
        except OSError:
            return None

    def _load(self) -> None:
        stat = self._file_stat()
        if stat is None or not self.path.is_file():
            raise ProviderError(f"student grounder: no weights file at {str(self.path)!r} "
                                "(train one with `label-factory train`)")
        try:
            model = ultralytics().YOLO(str(self.path), task="detect")
            names = {int(k): str(v) for k, v in model.names.items()}
        except Exception as e:  # noqa: BLE001 - report which weights failed and why
            raise ProviderError(f"student grounder: cannot load {str(self.path)!r}: {e}") from e
        imgsz = model.overrides.get("imgsz", 640)  # the size it was trained at, which predict uses
        self.input_size = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
        self.model, self.names, self._stat = model, names, stat
        self.sha256 = weights_sha256(self.path)

    def describe(self) -> dict:
        return {"name": self.name, "model": str(self.path), "sha256": self.sha256, "device": self.device,
                "dtype": self.dtype, "classes": list(self.names.values()), "min_score": self.min_score,
                **({"zoom": self.zoom} if self.zoom else {})}

    def classes_for(self, queries: Sequence[str]) -> Optional[list[int]]:
        """Class ids the queries name (case-insensitive), or None (= every class) when they name none."""
        wanted = {str(q).strip().lower() for q in queries if isinstance(q, str)}
        ids = [k for k, name in self.names.items() if name.strip().lower() in wanted]
        return ids or None

    def boxes(self, image: Image.Image, queries: Sequence[str] = ()) -> Detections:
        image = image.convert("RGB") if image.mode != "RGB" else image
        classes = self.classes_for(queries)
        with self._lock:  # one prediction at a time; a replaced weights file reloads first
            if self._file_stat() != self._stat:
                self._load()
            dets = self._predict([image], classes)[0]
            if self.zoom:
                dets = zoom.refine(image, dets, lambda crops: self._predict(crops, classes), self.zoom,
                                   min_side=self.input_size, min_score=ZOOM_MIN_SCORE)
        return dets

    def _predict(self, images: list, classes: Optional[list[int]]) -> list[Detections]:
        try:
            with keep_torch_threads():  # the first predict would pin the process's torch to cores - 1
                results = self.model.predict(images, conf=self.min_score, device=self.device,
                                             half=self.dtype == "fp16", classes=classes, verbose=False)
        except Exception as e:  # noqa: BLE001
            raise ProviderError(f"student grounder {str(self.path)!r}: prediction failed: {e}") from e
        out = []
        for res in results:
            b = res.boxes
            labels = np.array([self.names[int(c)] for c in b.cls.cpu().numpy()], dtype=object)
            out.append(Detections(xyxy=b.xyxy.float().cpu().numpy().reshape(-1, 4),
                                  scores=b.conf.float().cpu().numpy(), labels=labels, queries=labels.copy()))
        return out
