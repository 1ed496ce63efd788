"""``Detections`` -> COCO: pixel xyxy in the EXIF-corrected image <-> COCO ``[x, y, w, h]`` in pixels,
and a COCO dataset builder. A box with a mask gets its ``segmentation`` as COCO RLE (pycocotools) and
the mask's pixel count as its ``area``.
Label Studio results and coordinates are the Label Studio layer's (``pipeline.labelstudio``)."""
from __future__ import annotations

import numpy as np

from pipeline.detections import Detections


def xyxy_to_coco(xyxy) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


class CocoBuilder:
    """Accumulates images and kept detections into a COCO detection dict."""

    def __init__(self, labels: list[str]):
        self.categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(labels)]
        self._cat = {c["name"]: c["id"] for c in self.categories}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def add_detections(self, image_id: int, dets: Detections) -> None:
        scores = dets.final_scores()
        areas = dets.mask_areas()
        for i in dets.active_index():
            label = str(dets.labels[i])
            if label not in self._cat:
                self._cat[label] = len(self.categories) + 1
                self.categories.append({"id": self._cat[label], "name": label, "supercategory": "object"})
            bbox = xyxy_to_coco(dets.xyxy[i])
            ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": self._cat[label],
                   "bbox": [round(v, 2) for v in bbox], "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
            rle = dets.masks[i]
            if rle is not None:
                counts = rle["counts"]
                ann["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                       "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
                ann["area"] = int(areas[i])
            if not np.isnan(scores[i]):
                ann["score"] = float(scores[i])
            self.annotations.append(ann)

    def to_dict(self) -> dict:
        return {"info": {"description": "label-factory predictions"}, "images": self.images,
                "annotations": self.annotations, "categories": self.categories}
