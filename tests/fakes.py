"""Providers with scripted answers, for checking the pipeline's logic (thresholds, NMS, mapping,
coordinates) with known model outputs. They implement the real interfaces."""
from __future__ import annotations

import threading

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
