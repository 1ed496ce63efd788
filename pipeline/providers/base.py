"""The two provider interfaces.

* A VLM answers ``yes_probability(image, question) -> YesNo``; ``yes_probabilities``
  answers one question for several images (crops) and batches where the backend can.
* A grounder answers ``boxes(image, queries) -> Detections`` in pixel xyxy of ``image``,
  with ``labels`` and ``queries`` set to the query text (the ground stage maps queries to
  labels and applies thresholds / NMS).  Scores are NaN when the model has none.  A grounder
  that segments as it grounds (``gives_masks``, e.g. Falcon) also answers ``segment(image,
  queries)``: the same boxes, each with its mask.  One that can take an image region as the
  prompt (``finds_similar``, OWLv2) answers ``similar(image, example_xyxy)``: boxes that look
  like the example, scored.  One whose input is a square over the image's longest side
  (``square_input``: OWLv2 pads before it resizes, SAM after) gets a view whose square fits the budget.
* A segmenter (SAM family) answers ``masks_for_boxes(image, xyxy)`` (one mask per box, one
  batch per image) and ``mask_for_points(image, points, positive)`` (one object from clicks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.detections import Detections


def resolve_device(device: str | None) -> str:
    """A torch device for ``device``: ``auto`` (or none) is CUDA when available, else the CPU."""
    if not device or device == "auto":
        try:
            import torch
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ProviderError(RuntimeError):
    """A model or model server failed (after retries); the message says which and why."""


@dataclass
class YesNo:
    p_yes: float  # probability of YES in [0, 1]
    method: str  # "logprobs" | "logits" | "text"
    answer: str = ""  # raw text / top token the model gave
    raw: dict = field(default_factory=dict)  # provider-specific details (top logprobs, ...)

    def to_json(self) -> dict:
        return {"p_yes": round(float(self.p_yes), 6), "method": self.method, "answer": self.answer, **self.raw}


class VLM:
    name = "vlm"

    def yes_probability(self, image: Image.Image, question: str) -> YesNo:
        raise NotImplementedError

    def yes_probabilities(self, images: Sequence[Image.Image], question: str) -> list[YesNo]:
        return [self.yes_probability(im, question) for im in images]

    def describe(self) -> dict:
        return {"name": self.name}


class Grounder:
    name = "grounder"
    gives_masks = False  # segment() gives each box its mask (Falcon)
    finds_similar = False  # similar() takes an example region as the prompt (OWLv2)
    square_input = False  # pads (or stretches) the image to a square: its pixel budget counts max(w, h)**2

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        raise NotImplementedError

    def segment(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        raise NotImplementedError(f"{self.name} gives no masks: masks come from providers.segmenter")

    def similar(self, image: Image.Image, example_xyxy) -> Detections:
        raise NotImplementedError(f"{self.name} cannot find objects like an example region")

    def describe(self) -> dict:
        return {"name": self.name}


class Segmenter:
    """Box or point prompts -> masks at the image's size (SAM family)."""
    name = "segmenter"
    square_input = False  # as Grounder.square_input

    def masks_for_boxes(self, image: Image.Image, xyxy) -> np.ndarray:
        """(K, H, W) bool: one mask per pixel xyxy box."""
        raise NotImplementedError

    def mask_for_points(self, image: Image.Image, points, positive) -> tuple[np.ndarray, float]:
        """The (H, W) bool mask of the one object the clicks point at (``positive[i]`` False: a click
        that says "not this") and the model's own quality estimate for it."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name}
