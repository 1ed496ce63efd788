"""The task-level prediction score (pipeline/certainty.py) on constructed decisions: the arithmetic by hand,
the ordering it gives, and that the backend, `predict` and `run` all write it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import cli
from pipeline.certainty import certainty, task_certainty
from pipeline.config import Thresholds
from pipeline.detections import Detections
from pipeline.providers import registry
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

TH = Thresholds(filter=0.5, grounding=0.2, verify=0.6, per_label={"yield": {"verify": 0.8}})


def boxes(verify, grounding=None, labels=None, kept=None) -> Detections:
    n = len(verify)
    d = Detections(xyxy=np.tile([0, 0, 10, 10], (n, 1)), scores=grounding or [0.5] * n,
                   labels=labels or ["stop sign"] * n, kept=kept, verify_scores=verify)
    return d


def test_certainty_of_one_decision():
    assert certainty(0.6, 0.6) == 0.0 and certainty(1.0, 0.6) == 1.0 and certainty(0.0, 0.6) == 1.0
    assert certainty(0.7, 0.6) == pytest.approx(0.25)  # (0.7 - 0.6) / 0.4
    assert certainty(0.45, 0.6) == pytest.approx(0.25)  # (0.6 - 0.45) / 0.6
    assert certainty(0.3, 0.0) == pytest.approx(0.3) and certainty(1.0, 1.0) == 1.0 and certainty(0.4, 1.0) == 0.6


def test_task_certainty_by_hand():
    # the filter said a confident "no": certain, not 0
    assert task_certainty(0.02, Detections.empty(), TH) == pytest.approx(0.96)
    # filter 0.9 -> (0.9 - 0.5) / 0.5 = 0.8; boxes 0.95 -> 0.875, 0.3 (dropped) -> 0.5: the least is 0.5
    assert task_certainty(0.9, boxes([0.95, 0.3], kept=[True, False]), TH) == pytest.approx(0.5)
    # a box near its own label's threshold (yield: 0.8): (0.85 - 0.8) / 0.2 = 0.25
    assert task_certainty(0.9, boxes([0.95, 0.85], labels=["stop sign", "yield"]), TH) == pytest.approx(0.25)
    # verify off: kept boxes' grounding decisions; a box under the grounding threshold does not count
    d = boxes([np.nan, np.nan], grounding=[0.6, 0.1], kept=[True, False])
    assert task_certainty(None, d, TH) == pytest.approx((0.6 - 0.2) / 0.8)
    # nothing decided (filter off, no box): nothing was uncertain
    assert task_certainty(None, Detections.empty(), TH) == 1.0


def test_uncertain_tasks_sort_first():
    tasks = {"confident no": (0.01, Detections.empty()),  # 0.98
             "box on the edge": (0.99, boxes([0.61])),  # box (0.61 - 0.6) / 0.4 = 0.025
             "filter on the edge": (0.52, boxes([0.99])),  # filter (0.52 - 0.5) / 0.5 = 0.04
             "clear yes": (0.99, boxes([0.98]))}  # box (0.98 - 0.6) / 0.4 = 0.95
    scores = {name: task_certainty(p, d, TH) for name, (p, d) in tasks.items()}
    assert list(scores.values()) == pytest.approx([0.98, 0.025, 0.04, 0.95], abs=1e-6)  # float32 P(yes)
    assert sorted(scores, key=scores.get) == ["box on the edge", "filter on the edge", "clear yes", "confident no"]


def test_run_writes_the_certainty_as_every_tasks_score(tmp_path, monkeypatch):
    """`run` gives a filtered-out task its certainty too (it wrote no score before; the backend wrote 0.0)."""
    monkeypatch.setattr(registry, "get_vlm", lambda cfg: ScriptedVLM(lambda im, q: 0.1 if im.size == (40, 40) else 0.7))
    monkeypatch.setattr(registry, "get_grounder", lambda cfg: ScriptedGrounder([([2, 2, 20, 20], 0.9, "stop sign")]))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), "red").save(images / "no.png")
    Image.new("RGB", (50, 50), "red").save(images / "yes.png")
    project = tmp_path / "p.yaml"
    project.write_text(yaml.safe_dump({"project_name": "c", "target_object": "stop sign",
                                       "thresholds": {"filter": 0.5, "verify": 0.6}}))
    assert cli.main(["run", "--project", str(project), "--images", str(images), "--out", str(tmp_path / "o"),
                     "--quiet"]) == 0
    tasks = json.loads((tmp_path / "o" / "tasks.json").read_text())
    score = {t["data"]["image"].rsplit("/", 1)[1]: t["predictions"][0]["score"] for t in tasks}
    assert score["no.png"] == pytest.approx((0.5 - 0.1) / 0.5)
    # filter 0.7 -> 0.4, the box's verify 0.7 against 0.6 -> 0.25
    assert score["yes.png"] == pytest.approx(0.25)
