"""A track's keyframes: the fewest that interpolation turns back into every box seen, a span ended where
the track went unseen, and the interpolation Label Studio's video editor applies."""
from __future__ import annotations

import numpy as np

from pipeline.video.tracks import Keyframe, interpolate, keyframes, spans


def test_straight_motion_needs_two_keyframes_and_a_turn_needs_a_third():
    frames = list(range(0, 50, 5))
    straight = [[f, 0, f + 10, 10] for f in frames]
    keys = keyframes(frames, straight, max_gap=5)
    assert [k.frame for k in keys] == [0, 45] and [k.enabled for k in keys] == [True, False]
    turn = [[f, 0, f + 10, 10] if f <= 20 else [20, f - 20, 30, f - 10] for f in frames]
    keys = keyframes(frames, turn, max_gap=5)
    assert [k.frame for k in keys] == [0, 20, 45]
    boxes = interpolate(keys, 50)
    for f, b in zip(frames, turn):
        assert np.abs(boxes[f] - b).max() <= 2.0


def test_a_gap_longer_than_the_detection_step_ends_a_span():
    assert spans([0, 5, 10, 30, 35], 5) == [(0, 2), (3, 4)]
    keys = keyframes([0, 5, 10, 30, 35], [[0, 0, 10, 10]] * 5, max_gap=5)
    assert [(k.frame, k.enabled) for k in keys] == [(0, True), (10, False), (30, True), (35, False)]
    covered = interpolate(keys, 100)
    assert sorted(covered) == [*range(0, 11), *range(30, 36)]  # hidden between 11 and 29, nothing after 35


def test_an_open_last_keyframe_lasts_to_the_end_of_the_video():
    covered = interpolate([Keyframe(0, (0, 0, 10, 10), True), Keyframe(4, (4, 0, 14, 10), True)], 8)
    assert sorted(covered) == list(range(8)) and covered[2][0] == 2.0 and covered[7][0] == 4.0
