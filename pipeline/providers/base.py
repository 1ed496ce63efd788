"""The two provider interfaces.

* A VLM answers ``yes_probability(image, question) -> YesNo``; ``yes_probabilities``
  answers one question for several images (crops) and batches where the backend can.
* A grounder answers ``boxes(image, queries) -> Detections`` in pixel xyxy of ``image``,
  with ``labels`` and ``queries`` set to the query text (the ground stage maps queries to
  labels and applies thresholds / NMS).  Scores are NaN when the model has none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image

from pipeline.detections import Detections


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

    def boxes(self, image: Image.Image, queries: Sequence[str]) -> Detections:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name}
