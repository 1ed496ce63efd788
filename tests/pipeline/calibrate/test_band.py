"""The routing band from reviewed tasks (pipeline/calibrate/band.py), worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.calibrate.band import fit_band, floor_for
from pipeline.config import Route
from pipeline.detections import Detections
from tests.pipeline.calibrate.test_search import task

NAN = math.nan


def test_floor_keeps_the_share_of_right_boxes_asked_for():
    right_scores = np.array([0.95, 0.9, 0.8, 0.7, 0.62, 0.5, 0.45, 0.3, 0.21, 0.05])
    scores = np.r_[right_scores, [0.99, 0.01]]
    right = np.r_[np.ones(10, bool), [False, False]]
    # 90 %: 9 of the 10 right boxes -> the 9th highest right score, 0.21 (the wrong boxes do not count)
    assert floor_for(scores, right, 0.9) == pytest.approx(0.21)
    assert floor_for(scores, right, 1.0) == pytest.approx(0.05)
    assert floor_for(scores, right, 0.5) == pytest.approx(0.62)  # 5 of 10: the 5th highest
    assert floor_for(np.array([0.456]), np.array([True]), 1.0) == pytest.approx(0.45)  # down to the 0.01 step
    assert floor_for(scores, np.zeros(12, bool)) is None


def _tasks(rows):
    """One task per student box: (score, right)."""
    return [task(i + 1, [(s, NAN, hit)], truths=int(hit)) for i, (s, hit) in enumerate(rows)]


def test_band_from_the_students_boxes():
    """Student scores, right (R) or wrong (W): 0.9 R, 0.85 R, 0.8 R, 0.7 W, 0.6 R, 0.5 R, 0.4 W, 0.3 W, 0.2 R.
    Precision >= 0.8 on the student's score alone: from the top 1/1, 2/2, 3/3, 3/4 (0.75), 4/5 = 0.8 at 0.6,
    5/6 = 0.83 at 0.5, 5/7 at 0.4, ... -> accept 0.5 (5 right, 1 wrong). Floor keeping all 6 right boxes: 0.2;
    keeping 5 of 6 (0.8): the 5th highest right score, 0.5."""
    rows = [(0.9, True), (0.85, True), (0.8, True), (0.7, False), (0.6, True), (0.5, True), (0.4, False),
            (0.3, False), (0.2, True)]
    bands, found = fit_band(_tasks(rows), ["A"], 0.8, keep_recall=1.0)
    assert (bands["A"].floor, bands["A"].accept) == (pytest.approx(0.2), pytest.approx(0.5, abs=1e-6))
    assert found["A"]["kept"] == 6 and found["A"]["precision"] == pytest.approx(5 / 6)
    bands, _ = fit_band(_tasks(rows), ["A"], 0.8, keep_recall=0.8)
    assert bands["A"].floor == pytest.approx(0.5)  # never above accept


def test_band_with_a_guarantee_and_refusals():
    """30 right boxes at 0.9 and 10 wrong at 0.4: the walk certifies down to 0.41 (30 right, p = 0.9^30 = 0.042);
    at 0.40 the wrong ones join. Floor (all right boxes kept): 0.9, then capped at accept: 0.41."""
    rows = [(0.9, True)] * 30 + [(0.4, False)] * 10
    bands, found = fit_band(_tasks(rows), ["A"], 0.9, delta=0.1, keep_recall=1.0)
    assert bands["A"].accept == pytest.approx(0.41, abs=1e-6) and bands["A"].floor == pytest.approx(0.41, abs=1e-6)
    assert found["A"]["certificate"]["kept"] == 30
    bands, found = fit_band(_tasks(rows[:20]), ["A"], 0.9, delta=0.1)  # 20 boxes: fewer than the 22 needed
    assert bands == {} and "with probability >= 0.9" in found["A"]["refused"]
    bands, found = fit_band(_tasks([(0.9, False)] * 5), ["A"], 0.9)
    assert bands == {} and found["A"]["refused"] == "no right box of the student's"


def _crowded(n_tasks=20):
    """Per task: a right box at 0.9 and wrong ones at 0.1, 0.2, 0.3, 0.4 (the even tasks one more at 0.5); tasks 1
    and 2 also a right box at 0.035. Accept (precision >= 0.8): 0.9. Keeping 98 % of the 22 right boxes puts the
    floor at 0.03, where every task holds 4 or 5 boxes between floor and accept."""
    out = []
    for i in range(n_tasks):
        wrong = [(s, NAN, False) for s in (0.1, 0.2, 0.3, 0.4, 0.5)[:5 if i % 2 else 4]]
        low = [(0.035, NAN, True)] if i < 2 else []
        out.append(task(i + 1, [(0.9, NAN, True), *low, *wrong], truths=1 + len(low)))
    return out


def test_the_floor_rises_until_few_images_go_through_the_cascade():
    """max_uncertain 3: at floor 0.03 every task is over (share 1.0); from 0.11 only the 10 tasks with 5 wrong boxes
    are (4 in the band: 0.5); from 0.21 none. The floor keeping 98 % of the right boxes (0.03) would send every
    image through the whole cascade, the route saving nothing (issue 21's loop: a floor at 0.00)."""
    tasks = _crowded()
    bands, found = fit_band(tasks, ["A"], 0.8, to_cascade=1.0)
    assert bands["A"].floor == pytest.approx(0.03) and found["A"]["to_cascade"] == 1.0
    assert "floor_raised" not in found["A"]
    bands, found = fit_band(tasks, ["A"], 0.8, to_cascade=0.5)
    assert bands["A"].floor == pytest.approx(0.11) and found["A"]["to_cascade"] == 0.5
    assert found["A"]["floor_raised"] == {"from": pytest.approx(0.03), "right_kept": pytest.approx(20 / 22)}
    bands, found = fit_band(tasks, ["A"], 0.8)  # the default: at most 10 %
    assert (bands["A"].floor, bands["A"].accept) == (pytest.approx(0.21), pytest.approx(0.9, abs=1e-5))
    assert found["A"]["to_cascade"] == 0.0 and found["A"]["band"]["floor"] == pytest.approx(0.21)


def test_the_raise_counts_what_the_route_decides():
    """With verify off any band box sends the image to the cascade (pipeline/route.py): the floor climbs over the
    highest wrong box (0.5), to 0.51.
    A label calibrate leaves alone keeps the route's band, and its boxes count: B's two boxes at 0.3 (route floor
    0.1, accept 0.5) make every image over max_uncertain 1 whatever A's floor, so A's floor climbs to accept and the
    share stays 1.0."""
    tasks = _crowded()
    bands, found = fit_band(tasks, ["A"], 0.8, verify_on=False)
    assert bands["A"].floor == pytest.approx(0.51) and found["A"]["to_cascade"] == 0.0
    for t in tasks:
        t.candidates = Detections.merge([t.candidates, Detections(
            xyxy=[[2000, 0, 2050, 50], [2100, 0, 2150, 50]], scores=[0.3, 0.3], labels=["B", "B"])])
    route = Route(student="s.pt", floor=0.1, accept=0.5, max_uncertain=1)
    bands, found = fit_band(tasks, ["A"], 0.8, route=route)
    assert bands["A"].floor == pytest.approx(0.9, abs=1e-5) and found["A"]["to_cascade"] == 1.0
