"""Frames of a video for an image project, scene-aware: the first frame of every scene (PySceneDetect cuts)
and every ``stride`` frames within a scene, at most ``per_video`` frames (the stride widens to fit the
video's length into the cap; a video with more scenes than the cap keeps its first ``per_video`` picks).
Each pick comes with its provenance (frame index, time) and its perceptual hash (imagehash pHash), so the
caller drops near-identical frames the way the importer drops near-identical photos."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import imagehash
from PIL import Image

from pipeline.video.decode import Video, VideoInfo, VideoLimits
from pipeline.video.scenes import THUMBNAIL_SIDE, CutFinder


@dataclass
class Pick:
    index: int  # 0-based frame index
    time: float  # seconds
    image: Image.Image  # RGB at the working resolution (VideoLimits.frame_pixels)
    phash: str
    why: str  # "scene" (first frame of a scene) or "stride"


def stride_for(info: VideoInfo, stride: int, per_video: int) -> int:
    """``stride`` widened so that the whole video's stride picks fit ``per_video``."""
    return max(1, stride, math.ceil(info.frames / max(1, per_video)))


def sample(path: Union[str, Path], stride: int = 30, per_video: int = 50, limits: Optional[VideoLimits] = None,
           scene_threshold: float = 27.0) -> tuple[VideoInfo, Iterator[Pick]]:
    """The video's info and its picks, in order (decoded on the way; nothing but the current pick is held)."""
    video = Video(path, limits or VideoLimits.from_env())
    step = stride_for(video.info, stride, per_video)

    def picks() -> Iterator[Pick]:
        with video:
            cuts = CutFinder(video.info.fps, threshold=scene_threshold)
            start, n = 0, 0
            for frame in video.frames(small_side=THUMBNAIL_SIDE):
                if cuts.feed(frame.index, frame.small):
                    start = frame.index
                why = "scene" if frame.index == start else "stride" if (frame.index - start) % step == 0 else None
                if why is None:
                    continue
                image = frame.photo().pixels
                yield Pick(frame.index, frame.time, image, str(imagehash.phash(image)), why)
                n += 1
                if n >= per_video:
                    return
    return video.info, picks()
