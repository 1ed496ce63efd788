"""Per-label thresholds (``thresholds.per_label``) in the config, the stages, the calibration file next to a
project YAML, and the backend's process-wide pipeline following that file."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.cascade import Pipeline
from pipeline.config import ConfigError, calibration_path, load_project, parse_project
from pipeline.model_version import model_version
from pipeline.predict import runner
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

PROJECT = {"project_name": "per-label", "target_object": "stop sign", "label": "Stop Sign",
           "falcon_queries": {"Stop Sign": ["stop sign"], "Yield": ["yield sign"]},
           "thresholds": {"filter": 0.5, "grounding": 0.3, "verify": 0.5}}
BOXES = [([0, 0, 10, 10], 0.4, "stop sign"), ([20, 0, 30, 10], 0.4, "yield sign"),
         ([0, 20, 10, 30], 0.2, "yield sign")]


def run(data, verify_p=0.7):
    pipe = Pipeline(parse_project(data), vlm=ScriptedVLM(lambda im, q: verify_p), grounder=ScriptedGrounder(BOXES))
    return pipe.run(Image.new("RGB", (40, 40))).detections


def test_per_label_thresholds_apply_in_ground_and_verify():
    d = run(PROJECT)
    assert d.kept.tolist() == [True, True, False]
    per = {**PROJECT, "thresholds": {**PROJECT["thresholds"],
                                     "per_label": {"Yield": {"grounding": 0.1, "verify": 0.8}}}}
    d = run(per)
    assert d.labels.tolist() == ["Stop Sign", "Yield", "Yield"]
    assert d.kept.tolist() == [True, False, False]  # Yield: both boxes pass grounding 0.1, fail verify 0.8
    assert d.reason.tolist() == ["", "verify P(yes) < 0.8", "verify P(yes) < 0.8"]
    assert np.isfinite(d.verify_scores).all()
    d = run({**PROJECT, "thresholds": {**PROJECT["thresholds"], "per_label": {"Stop Sign": {"grounding": 0.5}}}})
    assert d.kept.tolist() == [False, True, False]
    assert d.reason.tolist()[:1] == ["grounding score < 0.5"] and d.reason[2] == "grounding score < 0.3"


def test_per_label_thresholds_change_the_model_version_and_none_keeps_it():
    base = parse_project(PROJECT)
    assert parse_project({**PROJECT, "thresholds": {**PROJECT["thresholds"], "per_label": {}}}).fingerprint() == \
        base.fingerprint()
    per = parse_project({**PROJECT, "thresholds": {**PROJECT["thresholds"], "per_label": {"Yield": {"verify": 0.8}}}})
    assert model_version(per) != model_version(base)
    assert per.thresholds.verify_for("Yield") == 0.8 and per.thresholds.verify_for("Stop Sign") == 0.5
    assert per.thresholds.grounding_for("Yield") == 0.3


def test_unknown_label_is_refused_with_the_labels_named():
    with pytest.raises(ConfigError, match=r"per_label names \['Yeld'\].*Stop Sign, Yield"):
        parse_project({**PROJECT, "thresholds": {"per_label": {"Yeld": {"verify": 0.8}}}})


def test_calibration_file_next_to_the_yaml_is_merged(tmp_path, caplog):
    path = tmp_path / "signs.yaml"
    path.write_text(yaml.safe_dump({**PROJECT, "thresholds": {**PROJECT["thresholds"],
                                                              "per_label": {"Stop Sign": {"verify": 0.6}}}}))
    before = load_project(path)
    side = calibration_path(path)
    assert side == tmp_path / "signs.calibration.yaml"
    side.write_text(yaml.safe_dump({"thresholds": {"filter": 0.2, "per_label": {
        "Yield": {"verify": 0.9, "grounding": 0.05}, "Gone": {"verify": 0.1}}}, "calibration": {"anything": 1}}))
    cfg = load_project(path)
    th = cfg.thresholds
    assert th.filter == 0.2 and th.verify == 0.5
    assert th.verify_for("Yield") == 0.9 and th.grounding_for("Yield") == 0.05
    assert th.verify_for("Stop Sign") == 0.6  # the YAML's own per-label entry stays
    assert "Gone" not in th.per_label and "ignoring thresholds for ['Gone']" in caplog.text
    assert model_version(cfg) != model_version(before)
    side.write_text(yaml.safe_dump({"thresholds": {"per_label": {"Yield": {"verify": 2}}}}))
    with pytest.raises(ConfigError, match=r"signs.calibration.yaml: thresholds: per_label.Yield.verify"):
        load_project(path)
    side.write_text(yaml.safe_dump({"thresholds": {"nms_iou": 0.1}}))
    with pytest.raises(ConfigError, match="'filter' and/or 'per_label'"):
        load_project(path)


def test_backend_pipeline_follows_a_new_calibration_file(tmp_path):
    path = tmp_path / "signs.yaml"
    path.write_text(yaml.safe_dump(PROJECT))
    runner.pipelines.clear()
    try:
        cfg, pipe = runner.load(path)
        assert runner.load(path)[1] is pipe
        calibration_path(path).write_text(yaml.safe_dump({"thresholds": {"per_label": {"Yield": {"verify": 0.9}}}}))
        cfg2, pipe2 = runner.load(path)
        assert pipe2 is not pipe and cfg2.thresholds.verify_for("Yield") == 0.9
        assert model_version(cfg2) != model_version(cfg)
    finally:
        runner.pipelines.clear()
