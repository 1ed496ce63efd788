"""Converters from the one Detections type: Label Studio RectangleLabels and COCO.

Coordinates: pixel xyxy in the EXIF-corrected image ("what a person sees") <-> Label Studio
percent x/y/width/height of that same original size (Label Studio measures the displayed,
orientation-corrected image) <-> COCO [x, y, w, h] in pixels.
"""
from __future__ import annotations

import uuid
from typing import Mapping, Optional

import numpy as np

from pipeline.detections import Detections


def xyxy_to_ls(xyxy, width: int, height: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return {"x": 100.0 * x1 / width, "y": 100.0 * y1 / height,
            "width": 100.0 * (x2 - x1) / width, "height": 100.0 * (y2 - y1) / height, "rotation": 0}


def ls_to_xyxy(value: Mapping, width: int, height: int) -> np.ndarray:
    if float(value.get("rotation", 0) or 0) != 0:
        raise ValueError("rotated rectangles are not supported")
    x1 = float(value["x"]) * width / 100.0
    y1 = float(value["y"]) * height / 100.0
    return np.array([x1, y1, x1 + float(value["width"]) * width / 100.0,
                     y1 + float(value["height"]) * height / 100.0], dtype=np.float32)


def xyxy_to_coco(xyxy) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_to_xyxy(bbox) -> np.ndarray:
    x, y, w, h = (float(v) for v in bbox)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def ls_results(dets: Detections, width: int, height: int, from_name: str, to_name: str,
               label_map: Optional[Mapping[str, str]] = None) -> list[dict]:
    """Kept boxes as Label Studio ``rectanglelabels`` results.

    ``label_map`` maps pipeline labels to the labeling config's labels; a box whose label is
    not in the map is left out (the caller logs it). Without a map labels pass unchanged."""
    out = []
    scores = dets.final_scores()
    for i in dets.active_index():
        label = str(dets.labels[i])
        if label_map is not None:
            if label not in label_map:
                continue
            label = label_map[label]
        value = xyxy_to_ls(dets.xyxy[i], width, height)
        value["rectanglelabels"] = [label]
        res = {"id": uuid.uuid4().hex[:10], "from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
               "original_width": int(width), "original_height": int(height), "image_rotation": 0, "value": value}
        if not np.isnan(scores[i]):
            res["score"] = float(scores[i])
        out.append(res)
    return out


def task_score(results: list[dict]) -> Optional[float]:
    """Per-task score: the mean of the box scores (Label Studio sorts and filters by it)."""
    s = [r["score"] for r in results if "score" in r]
    return float(np.mean(s)) if s else None


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
        for i in dets.active_index():
            label = str(dets.labels[i])
            if label not in self._cat:
                self._cat[label] = len(self.categories) + 1
                self.categories.append({"id": self._cat[label], "name": label, "supercategory": "object"})
            bbox = xyxy_to_coco(dets.xyxy[i])
            ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": self._cat[label],
                   "bbox": [round(v, 2) for v in bbox], "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
            if not np.isnan(scores[i]):
                ann["score"] = float(scores[i])
            self.annotations.append(ann)

    def to_dict(self) -> dict:
        return {"info": {"description": "label-factory predictions"}, "images": self.images,
                "annotations": self.annotations, "categories": self.categories}
