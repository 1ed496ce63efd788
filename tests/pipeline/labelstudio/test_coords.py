import math

import numpy as np
import pytest

from pipeline.labelstudio.coords import (
    percent_to_points,
    point_to_pixel,
    points_to_percent,
    rect_corners,
    rect_to_xyxy,
    xyxy_to_rect,
)


def test_rectangle_round_trip_many_sizes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        w, h = (int(v) for v in rng.integers(10, 5000, 2))
        x1, x2 = np.sort(rng.uniform(0, w, 2))
        y1, y2 = np.sort(rng.uniform(0, h, 2))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        box = np.array([x1, y1, x2, y2], np.float32)
        v = xyxy_to_rect(box, w, h)
        assert 0 <= v["x"] <= 100 and v["x"] + v["width"] <= 100.001
        assert np.allclose(rect_to_xyxy(v, w, h), box, atol=1e-2)


def test_rectangle_known_numbers():
    assert xyxy_to_rect([50, 25, 150, 75], 200, 100) == {"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0,
                                                         "rotation": 0}


def test_rotation_is_clockwise_about_the_top_left_corner_in_pixels():
    # 400 x 200 image; a 40 x 20 px rectangle at (100, 50): width is 10 % of 400, height 10 % of 200
    value = {"x": 25, "y": 25, "width": 10, "height": 10}
    corners = rect_corners({**value, "rotation": 90}, 400, 200)
    # clockwise on screen (y down): the top edge now points down, the left edge points left
    assert np.allclose(corners, [[100, 50], [100, 90], [80, 90], [80, 50]])
    assert rect_to_xyxy({**value, "rotation": 90}, 400, 200).tolist() == [80, 50, 100, 90]
    box45 = rect_to_xyxy({**value, "rotation": 45}, 400, 200)
    s = math.sqrt(0.5)
    assert np.allclose(box45, [100 - 20 * s, 50, 100 + 40 * s, 50 + 40 * s + 20 * s], atol=1e-3)
    # a full turn is no turn
    assert np.allclose(rect_to_xyxy({**value, "rotation": 360}, 400, 200), [100, 50, 140, 70], atol=1e-3)


def test_rotated_box_is_clipped_to_the_image_and_degenerate_ones_are_refused():
    # rotated by 180 about (0, 0): entirely outside the image
    with pytest.raises(ValueError, match="less than 1 px"):
        rect_to_xyxy({"x": 0, "y": 0, "width": 10, "height": 10, "rotation": 180}, 100, 100)
    assert rect_to_xyxy({"x": 5, "y": 5, "width": 10, "height": 10, "rotation": 180}, 100, 100).tolist() == \
        [0, 0, 5, 5]
    for bad in ({"x": 1}, {"x": "a", "y": 1, "width": 1, "height": 1}, {"x": float("nan"), "y": 1, "width": 1,
                                                                          "height": 1}):
        with pytest.raises(ValueError, match="rectangle"):
            rect_to_xyxy(bad, 10, 10)


def test_points_and_polygons():
    assert point_to_pixel({"x": 50, "y": 25, "width": 1}, 200, 100).tolist() == [100, 25]
    assert point_to_pixel({"x": 100, "y": 100}, 200, 100)[0] < 200  # on the last pixel, not past it
    pts = np.array([[10, 20], [30, 20], [30, 40]], np.float32)
    pct = points_to_percent(pts, 200, 100)
    assert pct == [[5.0, 20.0], [15.0, 20.0], [15.0, 40.0]]
    assert np.allclose(percent_to_points(pct, 200, 100), pts)
    assert points_to_percent([[-5, 120]], 200, 100) == [[0.0, 100.0]]
    with pytest.raises(ValueError):
        percent_to_points([[1, "x"]], 10, 10)
