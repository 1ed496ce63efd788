"""Export a video project's reviewed tracks as per-frame YOLO or COCO, so the student learns from video.

The truth of a task is its reviewed annotation, chosen as for photos (``pipeline.labelstudio.truth``); its
videorectangle tracks are interpolated as Label Studio's video editor shows them
(``pipeline.labelstudio.tracks``), and every ``stride``-th frame of the video becomes an image with the
boxes of that frame (a frame without a box is a reviewed negative: an empty label file). The split is by
task, so the frames of one video never straddle train and val. Layout as ``export.py`` writes it, images
named ``<task id>_<frame>.jpg``; the manifest says which video frame each image is.

Videos come only through ``to_file(url, task_id, dest)`` (the CLI passes the backend's guarded fetcher);
one that cannot be fetched or decoded fails its task only, with the reason in the manifest. Built in a
temporary sibling folder and swapped in at the end, like the photo export."""
from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from supervision.dataset.formats.yolo import object_to_yolo

from pipeline.atomic import building_dir
from pipeline.convert import CocoBuilder
from pipeline.detections import Detections
from pipeline.distill import FORMATS, split
from pipeline.distill.export import JPEG_QUALITY, MANIFEST, ExportError, write_dataset_files
from pipeline.labelstudio import lsapi, truth
from pipeline.labelstudio.tracks import read_tracks
from pipeline.video.decode import Video, VideoLimits, VideoLoadError
from pipeline.video.tracks import interpolate

log = logging.getLogger(__name__)


def video_target(label_config: str) -> tuple[str, str, list[str]]:
    """(VideoRectangle name, task data key of its Video, the labels of its Labels in config order)."""
    from pipeline.labelstudio import UnsupportedConfig
    try:
        layout = truth.layout_of(label_config)
    except UnsupportedConfig as e:
        raise ExportError(f"nothing to export: {e}") from None
    if layout.media != "video":
        raise ExportError("the labeling config has no <VideoRectangle> on a <Video>")
    return layout.outputs[0].name, layout.data_key, list(layout.outputs[0].labels)


def export_video_project(client, project_id: int, out: Path, fmt: str, to_file: Callable, *, stride: int = 10,
                         ratios: Sequence[float] = split.DEFAULT_RATIOS, classes: Optional[Sequence[str]] = None,
                         label_studio_url: str = "", page_size: int = 100) -> dict:
    """Export a Label Studio video project to ``out`` (module docstring); returns the manifest."""
    project = client.projects.get(project_id)
    tasks = lsapi.items(lsapi.task_json(client), page_size, project=project_id, fields="all", resolve_uri=False)
    source = {"label_studio_url": label_studio_url, "project_id": int(project_id), "project_title": project.title}
    return export_video_tasks(tasks, project.label_config, out, fmt, to_file, stride=stride, ratios=ratios,
                              classes=classes, source=source)


def export_video_tasks(tasks: Iterable, label_config: str, out: Path, fmt: str, to_file: Callable, *,
                       stride: int = 10, ratios: Sequence[float] = split.DEFAULT_RATIOS,
                       classes: Optional[Sequence[str]] = None, source: Optional[dict] = None) -> dict:
    """Export ``tasks`` (dicts or label-studio-sdk objects) of a project with ``label_config`` to ``out``."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if stride < 1:
        raise ExportError("--video-stride must be at least 1")
    from_name, data_key, config_labels = video_target(label_config)
    classes = list(classes or config_labels)
    if not classes:
        raise ExportError("no classes: the video's <Labels> has none and none were given")
    reviewed = []
    for raw in tasks:
        task = truth.as_dict(raw)
        ann = truth.reviewed_annotation(task)
        if ann is not None:
            reviewed.append((int(task["id"]), (task.get("data") or {}).get(data_key), ann))
    if not reviewed:
        raise ExportError("nothing to export: no video task has a submitted annotation")
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ExportError(f"{out}: exists, is not empty and is not a label-factory export (no {MANIFEST})")
    source = {**(source or {}), "from_name": from_name, "video_stride": stride}
    with building_dir(out) as root:
        return _write(reviewed, root, fmt, to_file, classes, from_name, stride, ratios, source)


def _write(reviewed, root: Path, fmt, to_file, classes, from_name, stride, ratios, source) -> dict:
    splits = split.assign([t for t, _, _ in reviewed], ratios)
    for s in split.SPLITS:
        (root / "images" / s).mkdir(parents=True)
        (root / "labels" / s if fmt == "yolo" else root / "annotations").mkdir(parents=True, exist_ok=True)
    class_ids = {c: i for i, c in enumerate(classes)}
    coco = {s: CocoBuilder(classes) for s in split.SPLITS}
    files, failed, per_class, dropped = [], [], Counter(), Counter()
    for task_id, url, ann in reviewed:
        s = splits[task_id]
        try:
            with tempfile.TemporaryDirectory(prefix="lf-export-video-") as tmp:
                dest = Path(tmp) / "video"
                to_file(url, task_id, dest)
                with Video(dest, VideoLimits.from_env()) as video:
                    w, h = video.info.width, video.info.height
                    tracks = read_tracks(ann.get("result"), w, h, from_name=from_name)
                    shown = [interpolate(t.keys, video.info.frames) for t in tracks]
                    for frame in video.frames():
                        if frame.index % stride:
                            continue
                        xyxy, labels = [], []
                        for t, boxes in zip(tracks, shown):
                            if frame.index in boxes:
                                if t.label not in class_ids:
                                    dropped[t.label] += 1
                                    continue
                                xyxy.append(np.clip(boxes[frame.index], 0, [w, h, w, h]))
                                labels.append(t.label)
                        dets = Detections(xyxy=np.array(xyxy, np.float32).reshape(-1, 4), scores=[np.nan] * len(xyxy),
                                          labels=labels)
                        name = f"{task_id}_{frame.index}"
                        rel = Path("images") / s / f"{name}.jpg"
                        frame.photo().pixels.save(root / rel, quality=JPEG_QUALITY)
                        rec = {"file": rel.as_posix(), "split": s, "task_id": task_id, "frame": frame.index,
                               "time": round(frame.time, 3), "annotation_id": ann.get("id"), "width": w, "height": h,
                               "boxes": len(dets)}
                        if fmt == "yolo":
                            label_file = Path("labels") / s / f"{name}.txt"
                            (root / label_file).write_text("".join(
                                object_to_yolo(dets.xyxy[i], class_ids[str(dets.labels[i])], (h, w)) + "\n"
                                for i in range(len(dets))))
                            rec["labels"] = label_file.as_posix()
                        else:
                            image_id = coco[s].add_image(rel.name, w, h)
                            coco[s].images[-1].update(task_id=task_id, frame=frame.index)
                            coco[s].add_detections(image_id, dets)
                        per_class.update(labels)
                        files.append(rec)
        except (VideoLoadError, OSError, RuntimeError, ValueError) as e:  # a broken or refused video: its task only
            reason = f"{type(e).__name__}: {e}"
            log.warning("task %s: video skipped: %s", task_id, reason)
            failed.append({"task": task_id, "reason": reason})
    if not files:
        raise ExportError(f"no video could be read ({len(failed)} failed; first: {failed[0]['reason']})")
    write_dataset_files(root, fmt, classes, coco, "label-factory video export")
    manifest = {
        "format": fmt, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": source,
        "classes": classes,
        "split": {"ratios": dict(zip(split.SPLITS, [round(float(r), 6) for r in ratios])),
                  "rule": "sha256 of the task id: every frame of a video in its task's split"},
        "counts": {s: {"images": sum(f["split"] == s for f in files),
                       "boxes": sum(f["boxes"] for f in files if f["split"] == s)} for s in split.SPLITS},
        "boxes_per_class": {c: per_class.get(c, 0) for c in classes},
        "left_out": {"dropped_labels": dict(dropped), "video_failed": failed},
        "files": files,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
