"""Write a Label Studio project's reviewed labels as a YOLO or COCO data set, with a manifest.

Layout (``out/``), every split folder created even when empty::

    images/{train,val,test}/<task id>.jpg     EXIF-corrected pixels (what Label Studio displays)
    labels/{train,val,test}/<task id>.txt     yolo: "<class id> cx cy w h", normalised; empty = negative
    data.yaml                                 yolo: train/val/test folders, nc, names (no ``path``: the
                                              folder can move; ultralytics resolves it next to the file)
    annotations/instances_<split>.json        coco: pycocotools-loadable, file_name relative to images/<split>
    manifest.json                             source, classes, split rule, counts, what was left out and
                                              why, and every image with its task id and annotation id
                                              (or prediction id + model_version when it is a pseudo-label)

Which tasks and regions: pipeline/distill/reviewed.py (the reviewed truth as ``evaluate`` and ``calibrate``
read it, pipeline/labelstudio/truth.py). Every output kind becomes the box that encloses it (a rotated
rectangle, a polygon, a brush mask), computed in pixels of the fetched, EXIF-corrected image (Label
Studio's percent of the displayed image; a brush decoded at the size Label Studio recorded and scaled) and
written as YOLO via supervision, COCO via ``CocoBuilder`` (pipeline/convert.py). Class ids are contiguous
in a fixed order: the labels of the labeling config's output controls in config order, or the ``classes``
given (YOLO 0..K-1, COCO 1..K). A box whose label is not a class is dropped and counted.

Images come only through the ``fetch(url, task_id)`` it is given (the CLI passes the backend's
guarded fetcher: Label Studio's host and ALLOWED_IMAGE_HOSTS only); an image that cannot be
fetched fails its task only, with the reason in the manifest. The data set is built in a sibling
temporary folder and swapped in at the end, so an interrupted export leaves the previous one."""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import yaml
from PIL import Image
from supervision.dataset.formats.yolo import object_to_yolo
from tqdm import tqdm

from pipeline.atomic import building_dir
from pipeline.convert import CocoBuilder
from pipeline.detections import Detections
from pipeline.distill import FORMATS, reviewed, split
from pipeline.distill.reviewed import Example
from pipeline.labelstudio import UnsupportedConfig, lsapi, truth

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
JPEG_QUALITY = 95


class ExportError(RuntimeError):
    """The export cannot be made (no labeling target, nothing reviewed, a folder that is not an export)."""


def export_project(client, project_id: int, out: Path, fmt: str, fetch: Callable, *,
                   ratios: Sequence[float] = split.DEFAULT_RATIOS, classes: Optional[Sequence[str]] = None,
                   pseudo_version: Optional[str] = None, pseudo_threshold: float = 0.5, label_studio_url: str = "",
                   concurrency: int = 4, progress: bool = True, page_size: int = 100) -> dict:
    """Export a Label Studio project (label-studio-sdk ``client``) to ``out``; returns the manifest."""
    project = client.projects.get(project_id)
    try:
        layout = truth.layout_of(project.label_config)
    except UnsupportedConfig as e:
        raise ExportError(f"nothing to export: {e}") from None
    tasks = lsapi.items(lsapi.task_json(client), page_size, project=project_id, fields="all", resolve_uri=False)
    bar = tqdm(tasks, desc="tasks", unit="task", disable=not progress)
    exs, tally = reviewed.examples(bar, layout, pseudo_version, pseudo_threshold)
    controls = [o.name for o in layout.outputs]
    source = {"label_studio_url": label_studio_url, "project_id": int(project_id), "project_title": project.title,
              "from_name": ", ".join(controls), "pseudo_labels": None if pseudo_version is None else
              {"model_version": pseudo_version, "min_score": pseudo_threshold}}
    return write_dataset(exs, Path(out), fmt, fetch, list(classes or layout.labels()), ratios=ratios, source=source,
                         tally=tally, concurrency=concurrency, progress=progress)


def _boxes(ex: Example, width: int, height: int, class_ids: dict, counts: dict) -> Detections:
    """The example's boxes in pixels of the fetched image (labels outside the classes dropped, counted)."""
    # percent of the displayed image: the fetched size is the one that counts
    counts["size_mismatch"] += sum(1 for r in ex.results if truth.recorded_size([r]) not in (None, (width, height)))
    dets, left_out = truth.boxes(ex.results, width, height)
    counts["degenerate"] += left_out
    ours = np.array([str(lab) in class_ids for lab in dets.labels], bool)
    for lab in dets.labels[~ours]:
        counts["dropped_labels"][str(lab)] = counts["dropped_labels"].get(str(lab), 0) + 1
    return dets[ours]


def write_dataset(exs: list[Example], out: Path, fmt: str, fetch: Callable, classes: list[str], *,
                  ratios: Sequence[float] = split.DEFAULT_RATIOS, source: Optional[dict] = None,
                  tally: Optional[reviewed.Tally] = None, concurrency: int = 4, progress: bool = True) -> dict:
    """Fetch each example's image and write the data set (module docstring); returns the manifest."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if not classes:
        raise ExportError("no classes: the labeling config's output controls have no labels and none were given")
    if len(set(classes)) != len(classes):
        raise ExportError(f"classes must be unique: {classes}")
    if not exs:
        raise ExportError("nothing to export: no task has a submitted annotation"
                          + ("" if (source or {}).get("pseudo_labels") else
                             " (add predictions as pseudo-labels with --pseudo-labels MODEL_VERSION)"))
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ExportError(f"{out}: exists, is not empty and is not a label-factory export (no {MANIFEST}); "
                          "choose another --out")
    with building_dir(out) as tmp:
        return _write(exs, tmp, fmt, fetch, classes, ratios, source or {}, tally or reviewed.Tally(),
                      concurrency, progress)


def _write(exs, root: Path, fmt, fetch, classes, ratios, source, tally, concurrency, progress) -> dict:
    splits = split.assign([ex.task_id for ex in exs], ratios)
    for s in split.SPLITS:
        (root / "images" / s).mkdir(parents=True)
        (root / "labels" / s if fmt == "yolo" else root / "annotations").mkdir(parents=True, exist_ok=True)
    class_ids = {c: i for i, c in enumerate(classes)}
    counts = {"dropped_labels": {}, "size_mismatch": 0, "degenerate": 0}
    coco = {s: CocoBuilder(classes) for s in split.SPLITS}

    def fetch_and_save(ex: Example):
        try:
            image: Image.Image = fetch(ex.image_url, ex.task_id)
            rel = Path("images") / splits[ex.task_id] / f"{ex.task_id}.jpg"
            image.convert("RGB").save(root / rel, quality=JPEG_QUALITY)
            return rel, image.size, None
        except Exception as e:  # noqa: BLE001 - a broken or refused image fails its task only
            return None, None, f"{type(e).__name__}: {e}"

    files, failed, per_class = [], [], Counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="export") as pool:
        for ex, (rel, size, err) in tqdm(zip(exs, pool.map(fetch_and_save, exs)), total=len(exs), desc="images",
                                         unit="img", disable=not progress):
            if err is not None:
                log.warning("task %s: image skipped: %s", ex.task_id, err)
                failed.append({"task": ex.task_id, "reason": err})
                continue
            (w, h), s = size, splits[ex.task_id]
            dets = _boxes(ex, w, h, class_ids, counts)
            per_class.update(str(lab) for lab in dets.labels)
            rec = {"file": rel.as_posix(), "split": s, "task_id": ex.task_id, "source": ex.source,
                   f"{ex.source}_id": ex.source_id, "pseudo": ex.pseudo, "width": w, "height": h,
                   "boxes": len(dets)}
            if ex.pseudo:
                rec["model_version"] = ex.model_version
            if fmt == "yolo":
                lines = [object_to_yolo(dets.xyxy[i], class_ids[str(dets.labels[i])], (h, w)) for i in range(len(dets))]
                label_file = Path("labels") / s / f"{ex.task_id}.txt"
                (root / label_file).write_text("".join(line + "\n" for line in lines))
                rec["labels"] = label_file.as_posix()
            else:
                image_id = coco[s].add_image(rel.name, w, h)
                coco[s].images[-1].update({k: rec[k] for k in ("task_id", "source", f"{ex.source}_id", "pseudo")})
                coco[s].add_detections(image_id, dets)
            files.append(rec)
    if not files:
        raise ExportError(f"no image could be fetched ({len(failed)} failed; first: {failed[0]['reason']})")
    files.sort(key=lambda f: f["task_id"])
    write_dataset_files(root, fmt, classes, coco, "label-factory export")
    per_split = {s: [f for f in files if f["split"] == s] for s in split.SPLITS}
    manifest = {
        "format": fmt, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source, "classes": classes,
        "split": {"ratios": dict(zip(split.SPLITS, [round(float(r), 6) for r in ratios])),
                  "rule": "sha256 of the task id; with >= 2 images train and val are never empty"},
        "task_ids_sha256": split.ids_digest(f["task_id"] for f in files),
        "counts": {s: {"images": len(v), "boxes": sum(f["boxes"] for f in v),
                       "pseudo": sum(f["pseudo"] for f in v)} for s, v in per_split.items()},
        "boxes_per_class": {c: per_class.get(c, 0) for c in classes},
        "left_out": {**tally.to_dict(), **counts, "image_failed": failed},
        "files": files,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def write_dataset_files(root: Path, fmt: str, classes: list, coco: dict, description: str) -> None:
    """The dataset's own files beside the images: YOLO's data.yaml, or one COCO file per split."""
    if fmt == "yolo":
        (root / "data.yaml").write_text(yaml.safe_dump(
            {"train": "images/train", "val": "images/val", "test": "images/test", "nc": len(classes),
             "names": dict(enumerate(classes))}, sort_keys=False, allow_unicode=True))
        return
    for s, builder in coco.items():
        d = builder.to_dict()
        d["info"] = {"description": f"{description}, {s} split", "version": "1.0"}
        (root / "annotations" / f"instances_{s}.json").write_text(json.dumps(d))
