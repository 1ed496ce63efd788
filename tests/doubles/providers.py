"""Providers with scripted answers, for checking the pipeline's logic (thresholds, NMS, mapping,
coordinates) with known model outputs. They implement the real interfaces."""
from __future__ import annotations

import threading
import time

import numpy as np

from pipeline.detections import Detections
from pipeline.providers.base import VLM, Grounder, Segmenter, YesNo


class ScriptedVLM(VLM):
    """P(yes) = fn(image, question); records every call."""
    name = "scripted-vlm"

    def __init__(self, fn):
        self.fn = fn
        self.calls = []
        self.batches = []
        self._lock = threading.Lock()

    def yes_probability(self, image, question):
        with self._lock:
            self.calls.append((image.size, question))
        return YesNo(float(self.fn(image, question)), "logits", answer="scripted")

    def yes_probabilities(self, images, question):
        with self._lock:
            self.batches.append(len(images))
        return [self.yes_probability(im, question) for im in images]


class ScriptedGrounder(Grounder):
    """Returns fixed boxes (pixel xyxy, score, query) for every image."""
    name = "scripted-grounder"

    def __init__(self, boxes):
        self.rows = list(boxes)
        self.calls = []

    def boxes(self, image, queries):
        self.calls.append(list(queries))
        rows = [r for r in self.rows if r[2] in queries]
        if not rows:
            return Detections.empty()
        return Detections(xyxy=[r[0] for r in rows], scores=[r[1] for r in rows],
                          labels=[r[2] for r in rows], queries=[r[2] for r in rows])


def red_fraction(image) -> float:
    """Share of strongly red pixels: lets a scripted VLM 'see' a red object in a crop."""
    a = np.asarray(image.convert("RGB")).astype(int)
    red = (a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)
    return float(red.mean())


class ColourSegmenter(Segmenter):
    """A segmenter that knows what objects are: the pixels of one flat colour. A box's mask is the
    pixels inside it that have the colour of its centre; a click's mask is the connected region of
    the clicked pixel's colour (minus, for a negative click, that one's region). Records calls."""
    name = "colour-segmenter"

    def __init__(self):
        self.box_calls, self.point_calls = [], []

    def masks_for_boxes(self, image, xyxy):
        a = np.asarray(image.convert("RGB")).astype(int)
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.box_calls.append(len(boxes))
        out = np.zeros((len(boxes), a.shape[0], a.shape[1]), bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            cy, cx = min((y1 + y2) // 2, a.shape[0] - 1), min((x1 + x2) // 2, a.shape[1] - 1)
            same = (np.abs(a - a[cy, cx]).sum(-1) == 0)
            out[k, y1:y2, x1:x2] = same[y1:y2, x1:x2]
        return out

    def mask_for_points(self, image, points, positive):
        import cv2
        a = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        self.point_calls.append((np.asarray(points).tolist(), list(positive)))
        mask = np.zeros(a.shape[:2], bool)
        for (x, y), pos in zip(np.asarray(points, int), positive):
            region = np.zeros((a.shape[0] + 2, a.shape[1] + 2), np.uint8)
            cv2.floodFill(a.copy(), region, (int(x), int(y)), (0, 0, 0), (0, 0, 0), (0, 0, 0),
                          4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
            region = region[1:-1, 1:-1].astype(bool)
            mask = (mask | region) if pos else (mask & ~region)
        return mask, 0.9


class ScriptedFinder(Grounder):
    """"Find similar" with fixed answers (pixel xyxy, score) whatever the example; records the examples."""
    name = "scripted-finder"
    finds_similar = True

    def __init__(self, boxes):
        self.rows = list(boxes)
        self.examples = []

    def similar(self, image, example_xyxy):
        self.examples.append(np.asarray(example_xyxy).tolist())
        return Detections(xyxy=[r[0] for r in self.rows], scores=[r[1] for r in self.rows],
                          labels=["example"] * len(self.rows))


class KnownVLM(VLM):
    """P(yes) = ``p`` for every question; records questions; optional delay to observe concurrency."""
    name = "known-vlm"

    def __init__(self, p: float = 0.9, delay: float = 0.0):
        self.p, self.delay = p, delay
        self.questions: list[str] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def yes_probability(self, image, question):
        with self._lock:
            self.questions.append(question)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            return YesNo(self.p, "logits", answer="YES")
        finally:
            with self._lock:
                self.active -= 1


class KnownGrounder(Grounder):
    """For each query, the boxes given as fractions of the image (so they fit any image size)."""
    name = "known-grounder"

    def __init__(self, boxes_by_query: dict[str, list[tuple]]):
        self.boxes_by_query = boxes_by_query
        self.calls: list[list[str]] = []
        self.sizes: list[tuple] = []

    def boxes(self, image, queries):
        self.calls.append(list(queries))
        self.sizes.append(image.size)
        rows = [(q, b) for q in queries for b in self.boxes_by_query.get(q, [])]
        if not rows:
            return Detections.empty()
        w, h = image.size
        xyxy = [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for _, b in rows]
        scores = [b[4] if len(b) > 4 else 0.8 for _, b in rows]
        return Detections(xyxy=np.array(xyxy), scores=scores, labels=[q for q, _ in rows],
                          queries=[q for q, _ in rows])


class HashEmbedder:
    """Deterministic vectors from the pixels, without torch (child processes, slow-fit tests).
    ``delay``: seconds each ``embed`` call takes (a slow fit)."""
    dim, id, model_spec, pretrained = 32, "hash", "hash", None

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def embed(self, images):
        import hashlib
        import time
        time.sleep(self.delay)
        out = []
        for im in images:
            seed = int(hashlib.md5(im.tobytes()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).normal(size=self.dim))
        return np.array(out, np.float32).reshape(-1, self.dim)
