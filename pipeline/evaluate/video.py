"""Tracking quality of a video project's predictions against its reviewed annotations, per model_version.

The truth of a task is its reviewed annotation, chosen as for photos (``pipeline.labelstudio.truth``); each
model_version's latest prediction of the task is compared with it.
Both are read as Label Studio's video editor shows them: every track's keyframes interpolated to a box per
frame (``pipeline.labelstudio.tracks``), in percent of the frame. A version is scored over all the reviewed
tasks it predicted at once (each task's frames after the previous task's, its tracks apart), so MOTA,
IDF1 and HOTA (``pipeline.video.quality``) weigh every frame alike."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from pipeline.detections import Detections
from pipeline.labelstudio import truth
from pipeline.labelstudio.tracks import per_frame, read_tracks
from pipeline.video.quality import tracking_quality


def video_control(label_config: str) -> Optional[str]:
    """from_name of the VideoRectangle a video project's predictions go to (None: not a video project)."""
    from pipeline.labelstudio import UnsupportedConfig
    try:
        layout = truth.layout_of(label_config)
    except (UnsupportedConfig, ValueError):
        return None
    return layout.outputs[0].name if layout.media == "video" else None


def _frames_count(*region_lists) -> Optional[int]:
    return next((t.frames_count for regions in region_lists for t in regions if t.frames_count), None)


def _shift(d: Detections, frames: int, tracks: int) -> Detections:
    return Detections(xyxy=d.xyxy, scores=d.scores, labels=d.labels,
                      extra={"frame": d.extra["frame"] + frames, "track": d.extra["track"] + tracks})


def evaluate_video_tasks(tasks: Iterable, from_name: str, versions: Optional[list[str]] = None,
                         iou: float = 0.5) -> dict:
    """{"tasks": reviewed video tasks, "versions": {version: figures + "tasks"}} (``pipeline.video.quality``)."""
    truth_parts: dict[str, list] = {}
    pred_parts: dict[str, list] = {}
    offsets: dict[str, list[int]] = {}
    reviewed = 0
    for raw in tasks:
        task = truth.as_dict(raw)
        ann = truth.reviewed_annotation(task)
        if ann is None:
            continue
        reviewed += 1
        annotated = read_tracks(ann.get("result"), from_name=from_name)
        found = sorted({p.get("model_version") or "" for p in map(truth.as_dict, task.get("predictions") or [])})
        for version in found:
            if versions and version not in versions:
                continue
            pred = read_tracks(truth.latest_prediction(task, version).get("result"), from_name=from_name)
            count = _frames_count(annotated, pred) or 0
            t, p = per_frame(annotated, count), per_frame(pred, count)
            count = max(count, int(t.extra["frame"].max(initial=-1)) + 1, int(p.extra["frame"].max(initial=-1)) + 1)
            frames, tracks = offsets.setdefault(version, [0, 0])
            truth_parts.setdefault(version, []).append(_shift(t, frames, tracks))
            pred_parts.setdefault(version, []).append(_shift(p, frames, tracks))
            offsets[version] = [frames + count, tracks + len(annotated) + len(pred) + 1]
    out = {"tasks": reviewed, "versions": {}}
    for version in truth_parts:
        t = Detections.merge(truth_parts[version])
        p = Detections.merge(pred_parts[version])
        for d in (t, p):
            if not len(d):
                d.extra.update(frame=np.zeros(0, int), track=np.zeros(0, int))
        figures = tracking_quality(t, p, offsets[version][0], iou=iou)
        out["versions"][version] = {"tasks": len(truth_parts[version]), **figures}
    return out


def lines(report: dict) -> list[str]:
    """The report as a terminal table (one row per model_version)."""
    head = f"{'model_version':40} {'tasks':>5} {'frames':>7} {'MOTA':>7} {'IDF1':>7} {'HOTA':>7} {'IDSW':>5}"
    out = [f"{report['tasks']} reviewed video task(s)", head]
    for v, f in report["versions"].items():
        out.append(f"{v[:40]:40} {f['tasks']:>5} {f['frames']:>7} {f['MOTA']:>7.3f} {f['IDF1']:>7.3f} "
                   f"{f['HOTA']:>7.3f} {f['IDSW']:>5}")
    return out
