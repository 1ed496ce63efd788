"""Scene cuts, found by PySceneDetect's ``ContentDetector`` (the change in hue, saturation, lightness and
edges between consecutive frames) on thumbnails the decoder makes (``Video.frames(small_side=...)``), so
cut detection costs a small fraction of decoding whatever the video's size."""
from __future__ import annotations

from typing import Optional

import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector

THUMBNAIL_SIDE = 128  # px, the longest side of the frames the detector compares
DEFAULT_THRESHOLD = 27.0  # ContentDetector's own default
DEFAULT_MIN_SCENE = 8  # frames: a flash shorter than this is not a scene


class CutFinder:
    """Feed it every frame's thumbnail in order (``feed``); it answers whether that frame starts a scene."""

    def __init__(self, fps: float, threshold: float = DEFAULT_THRESHOLD, min_scene_frames: int = DEFAULT_MIN_SCENE):
        self.fps = fps
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_scene_frames)
        self.cuts: list[int] = []

    def feed(self, index: int, thumbnail_bgr: Optional[np.ndarray]) -> bool:
        """True when a cut was found at ``index`` (the first frame of a new scene)."""
        if thumbnail_bgr is None:
            return False
        found = self._detector.process_frame(FrameTimecode(index, self.fps), thumbnail_bgr)
        new = [int(tc.frame_num) for tc in found if int(tc.frame_num) > 0]
        self.cuts += new
        return bool(new)
