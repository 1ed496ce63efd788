"""One video task (a labeling config with ``<VideoRectangle>`` on a ``<Video>``): fetch the video to a
temporary file (Label Studio or ALLOWED_IMAGE_HOSTS only, at most VIDEO_MAX_BYTES, memory one chunk), run
the video cascade on it (``pipeline.video.run``) within the video limits (``VideoLimits.from_env``) and the
request's deadline, and write one videorectangle region per kept track.

Video tasks are long. Under a deadline (the ML backend's PREDICT_DEADLINE) the run stops as soon as the
frames seen so far say the rest will not fit, and the task's error says to label its videos with
``label-factory predict`` (which has no deadline; ``--ray`` spreads the videos over workers)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

from pipeline import deadline
from pipeline.cascade import Pipeline
from pipeline.labelstudio.target import Target
from pipeline.labelstudio.tracks import video_prediction
from pipeline.video.decode import VideoLimits
from pipeline.video.run import VideoCascade, VideoResult

log = logging.getLogger(__name__)

USE_PREDICT = ("label videos with `label-factory predict --project P` (no deadline; add --ray to spread the "
               "videos over workers), then Label Studio shows the stored predictions")


def run_task(task_id, url, pipeline: Pipeline, target: Target, model_version: str,
             to_file: Callable[[str, object, Path], object], slot) -> tuple[dict, dict, VideoResult]:
    """(prediction, dropped labels, the run) for one video task. ``to_file(url, task_id, dest)`` fetches the
    video; ``slot`` is the model slot context manager the run holds (the download holds none)."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"task has no video URL (data.{target.data_key})")
    limits = VideoLimits.from_env()
    with tempfile.TemporaryDirectory(prefix="lf-video-") as tmp:
        dest = Path(tmp) / "video"
        to_file(url, task_id, dest)
        try:
            with slot():
                result = VideoCascade(pipeline).run(dest, limits)
        except deadline.DeadlineExceeded as e:
            raise deadline.DeadlineExceeded(f"video task not labelled: {e}; {USE_PREDICT}") from None
    i = result.info
    prediction, dropped = video_prediction(target.layout, result.boxes, i.width, i.height, i.fps, i.frames,
                                           i.duration, result.max_gap, model_version,
                                           tolerance=pipeline.config.video.tolerance)
    log.info("task %s: video %dx%d, %d frames: %d keyframes, %d between, %d cut(s), %d track(s) kept of %d "
             "in %.1f s", task_id, i.width, i.height, i.frames, result.counts["keyframes"], result.counts["between"],
             len(result.cuts), len(prediction["result"]), len(result.tracks), result.seconds)
    return prediction, dropped, result


