"""Providers with scripted answers, for checking the pipeline's logic (thresholds, NMS, mapping,
coordinates) with known model outputs. They implement the real interfaces."""
from __future__ import annotations

import threading

import numpy as np

from pipeline.detections import Detections
from pipeline.providers.base import VLM, Grounder, YesNo


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
