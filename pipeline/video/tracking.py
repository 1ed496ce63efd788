"""Boxes of successive frames -> tracks: ByteTrack (the ``trackers`` package, supervision's successor for
trackers) associates each frame's boxes with the tracks so far, by IoU with where its Kalman filter expects
each track, high-scoring boxes first, then low-scoring ones.

One tracker per label (a box never joins a track of another label). Frames need not be consecutive: each
update carries its time, so the filter predicts across the gap between two detection frames. A scene cut
ends every track (``cut``). Track ids are unique over the video.

ByteTrack gives a box that starts a track no id until the track is confirmed by the next update; the box
that started it is then named in ``late`` (its update's ``key``, its row, the id), so a track keeps its
first box (on a sparse schedule, the scene's first keyframe)."""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from pipeline.detections import Detections


class Tracker:
    """``update(boxes, time)`` -> a track id per box (-1: not (yet) part of a track).

    ``lost_seconds``: how long a track that sees no box stays alive to be picked up again (an object
    behind an occluder); ``min_iou``: the least overlap between a box and a track's prediction to join it;
    ``activation``: the least score for a box to start a track; ``high``: boxes at or above it are matched
    first; ``confirm``: detection frames in a row before a new track gets its id."""

    def __init__(self, fps: float, lost_seconds: float = 1.5, min_iou: float = 0.1, activation: float = 0.25,
                 high: float = 0.5, confirm: int = 1):
        self.fps = fps
        self.params = dict(lost_track_buffer=max(1, int(round(lost_seconds * 30))), frame_rate=fps,
                           track_activation_threshold=activation, minimum_consecutive_frames=confirm,
                           minimum_iou_threshold=min_iou, high_conf_det_threshold=high)
        self._trackers: dict[str, ByteTrackTracker] = {}
        self._ids: dict[tuple[int, str, int], int] = {}  # (scene, label, tracker's id) -> track id
        self._untracked: dict[str, tuple[object, np.ndarray, np.ndarray]] = {}  # label -> (key, rows, boxes)
        self.late: list[tuple[object, int, int]] = []  # (key of the previous update, its row, track id)
        self.scene = 0

    def cut(self) -> None:
        """A new scene: every track ends; boxes from here on start new ones."""
        self._trackers = {}
        self._untracked = {}
        self.scene += 1

    def update(self, dets: Detections, time: Optional[float], key: object = None) -> np.ndarray:
        """Track ids for ``dets``' boxes (in order; -1 for a box in no track). Every label's tracker sees the
        frame, also the ones with no box in it (their tracks age). ``late`` then names the boxes of the
        previous update (by its ``key``) that started a track confirmed now."""
        out = np.full(len(dets), -1, int)
        self.late = []
        labels = dets.labels.astype(str) if len(dets) else np.array([], str)
        for label in sorted(set(labels) | set(self._trackers)):
            rows = np.flatnonzero(labels == label)
            tracker = self._trackers.get(label)
            if tracker is None:
                tracker = self._trackers[label] = ByteTrackTracker(**self.params)
            scores = dets.scores[rows] if len(rows) else np.zeros(0, np.float32)
            conf = None if len(rows) and np.isnan(scores).all() else np.nan_to_num(scores, nan=1.0)
            sv_dets = sv.Detections(xyxy=dets.xyxy[rows].astype(np.float32).reshape(-1, 4), confidence=conf,
                                    data={"row": rows})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "timestamp not strictly increasing" for a repeated frame
                tracked = tracker.update(sv_dets, timestamp=time)
            before = self._untracked.pop(label, None)
            for row, tid in zip(tracked.data.get("row", []) if len(tracked) else [], tracked.tracker_id):
                if tid < 0:
                    continue
                fresh = (self.scene, label, int(tid)) not in self._ids
                out[int(row)] = self._ids.setdefault((self.scene, label, int(tid)), len(self._ids) + 1)
                if fresh and before is not None and len(before[1]):
                    iou = sv.box_iou_batch(dets.xyxy[[int(row)]], before[2])[0]
                    best = int(np.argmax(iou))
                    if iou[best] > 0:
                        self.late.append((before[0], int(before[1][best]), int(out[int(row)])))
                        before = (before[0], np.delete(before[1], best), np.delete(before[2], best, axis=0))
            untracked = rows[out[rows] < 0]
            self._untracked[label] = (key, untracked, dets.xyxy[untracked].reshape(-1, 4))
        return out
