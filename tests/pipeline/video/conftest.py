"""Generated videos (pipeline/video/synthetic.py): small, a few seconds, written once per module."""
from __future__ import annotations

import pytest

from pipeline.video import synthetic


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """4 s at 30 fps, 320x240: two scenes (a cut at frame 60), three movers each, a grey occluder."""
    w = synthetic.world(seconds=4, scenes=2, seed=3)
    return w, synthetic.write(w, tmp_path_factory.mktemp("video") / "moving.mp4")
