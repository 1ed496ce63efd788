"""Run the pipeline over a folder of images and write COCO, Label Studio tasks and a run record."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from pipeline import answer_cache, certainty
from pipeline.atomic import save_text
from pipeline.cascade import Pipeline
from pipeline.config import ProjectConfig
from pipeline.convert import CocoBuilder
from pipeline.images import ImageLoadError
from pipeline.labelstudio import Layout
from pipeline.labelstudio.labeling_config import IMAGE_NAME, labeling_config, local_files_url

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def list_images(folder: Path, limit: Optional[int] = None) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return files[:limit] if limit else files


@dataclass
class BatchOutput:
    coco: dict
    tasks: list
    record: dict
    paths: dict = field(default_factory=dict)


def run_folder(cfg: ProjectConfig, images: list[Path], pipeline: Pipeline, document_root: Path,
               model_version: str, progress: bool = True, masks: Optional[str] = None) -> BatchOutput:
    """Pre-annotate ``images``: Label Studio tasks for the labeling config ``label-factory config`` makes
    (``masks``: "brush" / "polygon" for mask outputs, each box then segmented), COCO (with RLE
    segmentation when masks) and the run record."""
    from label_studio_sdk.label_interface import LabelInterface
    layout = Layout.from_config(LabelInterface(config=labeling_config(cfg, masks=masks)))
    coco = CocoBuilder(cfg.labels())
    tasks, per_image, skipped = [], [], []
    totals: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for path in tqdm(images, desc="images", unit="img", disable=not progress):
        try:
            image = pipeline.open(path)
        except ImageLoadError as e:
            log.warning("skipped %s", e)
            skipped.append({"file": str(path), "reason": str(e)})
            continue
        try:
            res = pipeline.run(image, masks=layout.needs_masks)
        except Exception as e:  # a model error fails this image only
            reason = f"{path}: model error: {type(e).__name__}: {e}"
            log.error("skipped %s", reason)
            skipped.append({"file": str(path), "reason": reason})
            continue
        for k, v in res.timings.items():
            totals.setdefault(k, []).append(v)
        image_id = coco.add_image(str(path), res.width, res.height)
        coco.add_detections(image_id, res.detections)
        prediction, _ = layout.prediction(res.detections, res.width, res.height, model_version,
                                          score=certainty.of_result(res, cfg.thresholds))
        tasks.append({"data": {IMAGE_NAME: local_files_url(path, document_root)}, "predictions": [prediction]})
        per_image.append({"file": str(path), **res.to_record()})
    record = {
        "project": cfg.model_dump(mode="json", by_alias=False),
        "prompts": {"filter": cfg.prompt("filter"), "verify": cfg.prompt("verify")},
        "model_version": model_version,
        "masks": masks,
        "providers": pipeline.describe() if per_image else {},
        "images": per_image,
        "skipped": skipped,
        "timings": {
            "total_seconds": round(time.perf_counter() - t0, 3),
            "seconds_per_image": {k: round(float(np.mean(v)), 4) for k, v in totals.items()},
        },
        "counts": {"images": len(images), "labeled": len(per_image), "skipped": len(skipped),
                   "boxes": len(coco.annotations)},
        "answer_cache": {"enabled": answer_cache.enabled(), **pipeline.cache_counts()},
    }
    return BatchOutput(coco.to_dict(), tasks, record)


def write_outputs(out: BatchOutput, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"coco": out_dir / "coco.json", "tasks": out_dir / "tasks.json", "record": out_dir / "run.json"}
    for key, obj in (("coco", out.coco), ("tasks", out.tasks), ("record", out.record)):
        save_text(paths[key], json.dumps(obj, indent=1, default=str))
    out.paths = paths
    return paths
