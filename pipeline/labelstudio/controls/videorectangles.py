"""``<VideoRectangle>`` on a ``<Video>``: one region per track, a sequence of keyframes that Label Studio's
video editor interpolates between (``pipeline.video.tracks``). Its labels come from the ``<Labels>`` on the
same video (``labels_from``), written into the region's ``value.labels``.

A keyframe is ``{"frame": 1-based, "time": seconds, "enabled", "x", "y", "width", "height", "rotation"}``
in percent of the video's frame; ``enabled: false`` ends the track (or a span of it) at that keyframe.
The region carries ``framesCount`` and ``duration`` of the whole video."""
from __future__ import annotations

from typing import Optional, Sequence

from pipeline.detections import Detections
from pipeline.labelstudio.controls.base import OutputControl, build_label_map, new_region_id
from pipeline.labelstudio.coords import xyxy_to_rect
from pipeline.video.tracks import Keyframe


class VideoRectangles(OutputControl):
    tags = ("videorectangle",)

    def __init__(self, control, labels_from=None):
        super().__init__(control)
        self.labels_from = labels_from  # the <Labels> control on the same video, None: unlabelled tracks
        self.labeled = labels_from is not None
        self.labels = list(getattr(labels_from, "labels", None) or [])

    def label_for(self, label: str) -> Optional[str]:
        if not self.labeled:
            return label
        if label not in self._map:
            self._map[label] = build_label_map(self.labels_from, [label]).get(label)
        return self._map[label]

    def value(self, dets: Detections, i: int, width: int, height: int) -> Optional[dict]:
        """One box on its own (a single-keyframe track) at ``extra["frame"]`` (0-based, default 0)."""
        frame = int(dets.extra["frame"][i]) if "frame" in dets.extra else 0
        return {"sequence": [self.keyframe(Keyframe(frame, tuple(dets.xyxy[i]), False), width, height, None)]}

    @staticmethod
    def keyframe(k: Keyframe, width: int, height: int, fps: Optional[float]) -> dict:
        rect = xyxy_to_rect(k.xyxy, width, height)
        return {"frame": k.frame + 1, "enabled": bool(k.enabled), "rotation": 0,
                "x": rect["x"], "y": rect["y"], "width": rect["width"], "height": rect["height"],
                **({"time": k.frame / fps} if fps else {})}

    def track_result(self, keys: Sequence[Keyframe], label: Optional[str], width: int, height: int, fps: float,
                     frames_count: int, duration: float, score: Optional[float],
                     region_id: Optional[str] = None) -> dict:
        """One track as a videorectangle result."""
        value = {"framesCount": int(frames_count), "duration": float(duration),
                 "sequence": [self.keyframe(k, width, height, fps) for k in keys]}
        if self.labeled:
            value["labels"] = [label] if label else []
        res = {"id": region_id or new_region_id(), "from_name": self.name, "to_name": self.to_name,
               "type": self.tag, "origin": "prediction", "value": value}
        if score is not None:
            res["score"] = float(score)
        return res
