"""Generated videos (pipeline/video/synthetic.py): small, a few seconds, written once per module."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.video import synthetic


def truth_of(world: synthetic.World) -> Detections:
    """Every frame's true boxes in one Detections (``extra["frame"]``, ``extra["object"]``)."""
    parts = []
    for f in range(world.frames):
        d = world.truth(f)
        parts.append(Detections(xyxy=d.xyxy, scores=d.scores, labels=d.labels,
                                extra={"object": d.extra["object"], "frame": np.full(len(d), f)}))
    return Detections.merge(parts)


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """4 s at 30 fps, 320x240: two scenes (a cut at frame 60), three movers each, a grey occluder."""
    w = synthetic.world(seconds=4, scenes=2, seed=3)
    return w, synthetic.write(w, tmp_path_factory.mktemp("video") / "moving.mp4")
