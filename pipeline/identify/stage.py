"""The Pipeline's identify hook: crop each kept box, embed, search the reference index.

Each kept box gets identify's ``Match`` in ``dets.identities`` (label, ``"unknown"`` below the
thresholds, cosine, margin, variant, the nearest reference's label); boxes not kept keep None.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image

from pipeline.crops import crop
from pipeline.detections import Detections
from pipeline.identify.index import UNKNOWN, IndexSnapshot, IndexStore, Match

log = logging.getLogger(__name__)

# Crops for identification are the box itself (no padding), for references and queries alike.
IDENTIFY_PADDING = 0.0


class Identifier:
    """callable(image, detections) -> None, for ``Pipeline(identifier=...)``."""

    def __init__(self, index: Union[IndexStore, IndexSnapshot, Callable[[], IndexSnapshot]], embedder,
                 min_cosine: float = 0.8, min_margin: float = 0.05, top_k: int = 5,
                 padding: float = IDENTIFY_PADDING):
        if isinstance(index, IndexStore):
            self._snapshot = index.current
        elif isinstance(index, IndexSnapshot):
            self._snapshot = lambda: index
        else:
            self._snapshot = index
        self.embedder = embedder
        self.min_cosine, self.min_margin, self.top_k, self.padding = min_cosine, min_margin, top_k, padding
        self.last_version: Optional[int] = None

    @classmethod
    def from_config(cls, index, embedder, provider) -> "Identifier":
        """With thresholds from a ``config.IdentifyProvider``."""
        return cls(index, embedder, provider.min_cosine, provider.min_margin, provider.top_k)

    def identify_boxes(self, image: Image.Image, boxes) -> tuple[list[Match], int]:
        """Matches for pixel xyxy boxes, and the version of the index that answered."""
        snap = self._snapshot()  # one snapshot for the whole call
        self.last_version = snap.version
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return [], snap.version
        crops = [crop(image, b, self.padding) for b in boxes]
        if not len(snap):
            return snap.search(np.zeros((len(crops), 1), np.float32)), snap.version
        vecs = self.embedder.embed(crops)
        return snap.search(vecs, self.top_k, self.min_cosine, self.min_margin,
                           embedder=getattr(self.embedder, "id", None)), snap.version

    def __call__(self, image: Image.Image, dets: Detections) -> None:
        idx = dets.active_index()
        matches, version = self.identify_boxes(image, dets.xyxy[idx])
        dets.set_identities(idx, matches)
        log.debug("identify: %d boxes against index v%s: %s", len(idx), version, [m.label for m in matches])


__all__ = ["Identifier", "IDENTIFY_PADDING", "UNKNOWN"]
