"""``<BrushLabels>`` / ``<Brush>``: one brush mask per box, in Label Studio's RLE."""
from __future__ import annotations

from typing import Optional

from pipeline.detections import Detections
from pipeline.labelstudio.controls.base import OutputControl
from pipeline.labelstudio.masks import mask_to_rle


class Brushes(OutputControl):
    tags = ("brushlabels", "brush")
    needs_masks = True

    def value(self, dets: Detections, i: int, width: int, height: int) -> Optional[dict]:
        mask = dets.mask(i)
        if mask is None or not mask.any():
            return None
        if mask.shape != (height, width):
            raise ValueError(f"box {i}: a {mask.shape[1]}x{mask.shape[0]} mask for a {width}x{height} image")
        return {"format": "rle", "rle": mask_to_rle(mask)}
