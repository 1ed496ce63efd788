"""``<PolygonLabels>`` / ``<Polygon>``: one polygon per box, the outline of its mask
(``pipeline.labelstudio.masks.outline``: largest part, simplified)."""
from __future__ import annotations

from typing import Optional

from pipeline.detections import Detections
from pipeline.labelstudio.controls.base import OutputControl
from pipeline.labelstudio.coords import points_to_percent
from pipeline.labelstudio.masks import outline


class Polygons(OutputControl):
    tags = ("polygonlabels", "polygon")
    needs_masks = True

    def value(self, dets: Detections, i: int, width: int, height: int) -> Optional[dict]:
        mask = dets.mask(i)
        if mask is None:
            return None
        points = outline(mask)
        if not len(points):
            return None
        return {"points": points_to_percent(points, width, height), "closed": True}
