"""Tracks <-> Label Studio ``videorectangle`` results, both ways.

* ``video_prediction``: the boxes of a video run (``Detections`` with ``extra["frame"]`` and
  ``extra["track"]``) -> one region per kept track of the layout's ``VideoRectangle``: its keyframes
  (``pipeline.video.tracks.keyframes``), label, score (verify's P(yes) for the track) and identity as meta text;
* ``read_tracks``: videorectangle results (an annotation, a prediction) -> each region's keyframes;
* ``per_frame``: those tracks -> a box per frame, interpolated as Label Studio's video editor shows them
  (``Detections`` with ``extra["frame"]`` 0-based and ``extra["track"]`` the region's index), for
  ``evaluate`` and ``export``.

Label Studio numbers frames from 1; here frames are 0-based. Coordinates are percent of the frame."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from pipeline.detections import Detections
from pipeline.labelstudio.controls import VideoRectangles
from pipeline.video.tracks import Keyframe, interpolate, keyframes

log = logging.getLogger(__name__)


def video_prediction(layout, boxes: Detections, width: int, height: int, fps: float, frames_count: int,
                     duration: float, max_gap: int, model_version: str, tolerance: float = 2.0,
                     score: Optional[float] = None) -> tuple[dict, dict]:
    """A Label Studio prediction for one video task, and per pipeline label the tracks that got no region
    (their label is in none of the output's labels)."""
    out = layout.outputs[0]
    if not isinstance(out, VideoRectangles):
        raise ValueError("video_prediction needs a video layout (a <VideoRectangle> on a <Video>)")
    kept = boxes.active()
    track = kept.extra["track"] if len(kept) else np.zeros(0, int)
    final = kept.final_scores()
    results, dropped = [], {}
    for t in np.unique(track):
        rows = np.flatnonzero(track == t)
        rows = rows[np.argsort(kept.extra["frame"][rows], kind="stable")]
        label = str(kept.labels[rows[0]])
        m = kept.identities[rows[0]]
        name = m.label if m is not None and getattr(m, "known", False) else None
        lab = (out.label_for(name) if name else None) or out.label_for(label)
        if lab is None:
            dropped[label] = dropped.get(label, 0) + 1
            continue
        s = final[rows]
        own = None if np.isnan(s).all() else float(np.nanmean(s))
        keys = keyframes(kept.extra["frame"][rows], kept.xyxy[rows], max_gap, tolerance)
        region = out.track_result(keys, lab, width, height, fps, frames_count, duration, own)
        if m is not None:
            cosine = None if np.isnan(m.cosine) else round(float(m.cosine), 3)
            region["meta"] = {"text": [f"{m.label} cos={cosine}"]}
        results.append(region)
    if score is None:
        scores = [r["score"] for r in results if "score" in r]
        score = float(np.mean(scores)) if scores else 0.0
    return {"result": results, "score": float(score), "model_version": model_version}, dropped


@dataclass
class TrackRegion:
    region_id: str
    label: str
    keys: list[Keyframe]
    score: Optional[float]
    frames_count: Optional[int]


def read_tracks(results: Iterable, width: int = 100, height: int = 100, from_name: Optional[str] = None
                ) -> list[TrackRegion]:
    """The videorectangle regions of ``results`` (of ``from_name`` when given), keyframes in pixels of a
    ``width`` x ``height`` frame (default: percent). A malformed keyframe is skipped with a log line."""
    out = []
    for r in results or []:
        if not isinstance(r, dict) or str(r.get("type", "")).lower() != "videorectangle":
            continue
        if from_name is not None and r.get("from_name") != from_name:
            continue
        value = r.get("value") or {}
        keys = []
        for k in value.get("sequence") or []:
            try:
                x, y = float(k["x"]) * width / 100, float(k["y"]) * height / 100
                w, h = float(k["width"]) * width / 100, float(k["height"]) * height / 100
                keys.append(Keyframe(int(k["frame"]) - 1, (x, y, x + w, y + h), k.get("enabled", True) is not False))
            except (KeyError, TypeError, ValueError) as e:
                log.info("region %s: keyframe skipped: %s", r.get("id"), e)
        labels = value.get("labels") or []
        count = value.get("framesCount")
        out.append(TrackRegion(str(r.get("id") or ""), str(labels[0]) if labels else "", sorted(keys, key=_frame),
                               None if r.get("score") is None else float(r["score"]),
                               int(count) if isinstance(count, (int, float)) else None))
    return out


def _frame(k: Keyframe) -> int:
    return k.frame


def per_frame(tracks: list[TrackRegion], frames_count: Optional[int] = None) -> Detections:
    """A box per frame of every track, as the video editor interpolates them (``extra["frame"]`` 0-based,
    ``extra["track"]`` the track's position in ``tracks``), in frame order."""
    xyxy, labels, scores, frames, ids = [], [], [], [], []
    for t, tr in enumerate(tracks):
        count = frames_count or tr.frames_count or (max((k.frame for k in tr.keys), default=-1) + 1)
        for f, box in interpolate(tr.keys, count).items():
            if f < count:
                xyxy.append(box)
                labels.append(tr.label)
                scores.append(np.nan if tr.score is None else tr.score)
                frames.append(f)
                ids.append(t)
    order = np.argsort(np.array(frames, int), kind="stable")
    return Detections(xyxy=np.array(xyxy, np.float32).reshape(-1, 4)[order], labels=np.array(labels, object)[order],
                      scores=np.array(scores, np.float32)[order],
                      extra={"frame": np.array(frames, int)[order], "track": np.array(ids, int)[order]})
