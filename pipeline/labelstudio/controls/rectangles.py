"""``<RectangleLabels>`` / ``<Rectangle>``: one rectangle per box."""
from __future__ import annotations

from pipeline.detections import Detections
from pipeline.labelstudio.controls.base import OutputControl
from pipeline.labelstudio.coords import xyxy_to_rect


class Rectangles(OutputControl):
    tags = ("rectanglelabels", "rectangle")

    def value(self, dets: Detections, i: int, width: int, height: int) -> dict:
        return xyxy_to_rect(dets.xyxy[i], width, height)
