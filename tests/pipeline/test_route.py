"""Routing through the student (pipeline/route.py, ``Pipeline.run`` with a ``route``): sure boxes kept without a
foundation model, the band verified, an image the student is unsure about through the whole cascade, with scripted
providers that record every call."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import certainty
from pipeline.cascade import Pipeline
from pipeline.config import ConfigError, calibration_path, load_project, parse_project
from pipeline.model_version import model_version
from pipeline.route import decide
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

PROJECT = {"project_name": "routed", "target_object": "stop sign", "label": "Stop Sign",
           "queries": {"Stop Sign": ["stop sign"], "Drone": ["drone"]},
           "thresholds": {"filter": 0.5, "grounding": 0.2, "verify": 0.5}}
ROUTE = {"student": "student.pt", "accept": 0.6, "floor": 0.2, "max_uncertain": 2}
# the student's boxes: (xyxy, score, class); the cascade grounder's: (xyxy, score, query)
SURE = ([0, 0, 20, 20], 0.9, "Stop Sign")
BAND = ([30, 0, 50, 20], 0.4, "Stop Sign")
LOW = ([60, 0, 80, 20], 0.1, "Drone")
CASCADE = [([0, 40, 30, 70], 0.8, "stop sign"), ([40, 40, 70, 70], 0.7, "drone")]


@pytest.fixture(autouse=True)
def _no_answer_cache(monkeypatch):
    monkeypatch.setenv("LF_ANSWER_CACHE", "0")  # scripted providers answer differently from one pipeline to the next


def pipeline(student_rows, route=ROUTE, verify_p=0.8, **project):
    data = {**PROJECT, "route": route, **project}
    vlm = ScriptedVLM(lambda im, q: verify_p)
    student, grounder = ScriptedGrounder(student_rows), ScriptedGrounder(CASCADE)
    return Pipeline(parse_project(data), vlm=vlm, grounder=grounder, student=student), vlm, student, grounder


def test_sure_boxes_are_kept_the_band_verified_and_nothing_else_asked():
    pipe, vlm, student, grounder = pipeline([SURE, BAND, LOW])
    res = pipe.run(Image.new("RGB", (100, 80)))
    d = res.detections
    assert student.calls == [["Stop Sign", "Drone"]] and grounder.calls == []
    assert len(vlm.calls) == 1  # one crop: the band box; no filter question, nothing about the sure box
    assert d.labels.tolist() == ["Stop Sign", "Stop Sign", "Drone"]  # accepted, band, under the floor
    assert d.kept.tolist() == [True, True, False]
    assert d.stage.tolist() == ["route", "verify", "ground"]
    assert np.isnan(d.verify_scores[0]) and d.verify_scores[1] == pytest.approx(0.8)
    assert res.route == {"path": "student", "accepted": 1, "band": 1, "dropped": 0, "why": ""}
    assert set(res.timings) == {"student", "verify"}
    assert res.verify_answers[0]["box"] == 1
    # the band box fails verify: dropped with the reason
    pipe, vlm, *_ = pipeline([SURE, BAND], verify_p=0.3)
    d = pipe.run(Image.new("RGB", (100, 80))).detections
    assert d.kept.tolist() == [True, False] and d.reason[1] == "verify P(yes) < 0.5"


def test_an_image_the_student_is_unsure_about_goes_through_the_whole_cascade():
    band = [([10 * i, 0, 10 * i + 8, 8], 0.3 + 0.05 * i, "Stop Sign") for i in range(3)]  # 3 in the band > 2
    pipe, vlm, student, grounder = pipeline([SURE, *band])
    res = pipe.run(Image.new("RGB", (100, 80)))
    assert len(student.calls) == 1 and grounder.calls == [["stop sign", "drone"]]
    assert len(vlm.calls) == 1 + 2  # the filter's question, then the cascade's two boxes
    assert res.detections.labels.tolist() == ["Stop Sign", "Drone"]  # the cascade's boxes, not the student's
    assert res.detections.xyxy.tolist() == [[0, 40, 30, 70], [40, 40, 70, 70]]
    assert res.route["path"] == "cascade" and "3 student box(es)" in res.route["why"]
    assert set(res.timings) == {"student", "filter", "ground", "verify"}
    assert res.thresholds is None  # the cascade's own decisions: the project's thresholds


def test_with_verify_off_any_band_box_sends_the_image_to_the_cascade():
    off = {"stages": {"filter": False, "ground": True, "verify": False, "identify": False}}
    pipe, vlm, student, grounder = pipeline([SURE, BAND], **off)
    res = pipe.run(Image.new("RGB", (100, 80)))
    assert res.route["path"] == "cascade" and "verify is off" in res.route["why"]
    assert len(grounder.calls) == 1 and vlm.calls == []
    pipe, vlm, student, grounder = pipeline([SURE, LOW], **off)
    assert pipe.run(Image.new("RGB", (100, 80))).route["path"] == "student" and grounder.calls == []


def test_each_label_has_its_own_band():
    route = {**ROUTE, "per_label": {"Drone": {"floor": 0.05, "accept": 0.08}}}
    pipe, vlm, *_ = pipeline([SURE, BAND, LOW], route=route)
    d = pipe.run(Image.new("RGB", (100, 80))).detections
    assert d.labels.tolist() == ["Stop Sign", "Drone", "Stop Sign"]  # the drone at 0.1 is over its accept (0.08)
    assert d.kept.tolist() == [True, True, True] and len(vlm.calls) == 1


def test_typed_queries_skip_the_student():
    pipe, vlm, student, grounder = pipeline([SURE])
    res = pipe.run(Image.new("RGB", (100, 80)), queries={"drone": "Drone"}, skip_filter=True)
    assert student.calls == [] and grounder.calls == [["drone"]] and res.route is None


def test_the_task_score_of_a_routed_result_weighs_student_boxes_against_accept():
    """Sure box 0.9 vs accept 0.6: (0.9 - 0.6) / 0.4 = 0.75; band box verified at 0.8 vs verify 0.5:
    (0.8 - 0.5) / 0.5 = 0.6. The task scores the least certain: 0.6."""
    pipe, *_ = pipeline([SURE, BAND])
    res = pipe.run(Image.new("RGB", (100, 80)))
    assert certainty.of_result(res, pipe.config.thresholds) == pytest.approx(0.6)
    pipe, *_ = pipeline([SURE])
    res = pipe.run(Image.new("RGB", (100, 80)))
    assert certainty.of_result(res, pipe.config.thresholds) == pytest.approx(0.75)


def test_decide_on_its_own():
    from pipeline.config import Route
    from pipeline.detections import Detections
    d = Detections(xyxy=np.zeros((4, 4)), scores=[0.95, 0.5, 0.59, 0.05], labels=["A"] * 4)
    r = decide(d, Route(student="s.pt", accept=0.6, floor=0.1, max_uncertain=1))
    assert (r.path, r.accepted.tolist(), r.band.tolist(), r.dropped.tolist()) == ("cascade", [0], [1, 2], [3])
    r = decide(d, Route(student="s.pt", accept=0.6, floor=0.1, max_uncertain=2))
    assert r.path == "student"


def test_route_changes_the_model_version_with_the_students_weights(tmp_path):
    w = tmp_path / "student.pt"
    w.write_bytes(b"weights one")
    plain = parse_project(PROJECT)
    routed = parse_project({**PROJECT, "route": {**ROUTE, "student": str(w)}})
    v1 = model_version(routed)
    assert "+route-student-" in v1 and v1 != model_version(plain)
    assert model_version(parse_project({**PROJECT, "route": None})) == model_version(plain)
    w.write_bytes(b"weights two")
    assert model_version(parse_project({**PROJECT, "route": {**ROUTE, "student": str(w)}})) != v1
    other_band = parse_project({**PROJECT, "route": {**ROUTE, "student": str(w), "accept": 0.7}})
    assert other_band.fingerprint() != parse_project({**PROJECT, "route": {**ROUTE, "student": str(w)}}).fingerprint()


def test_route_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"route: floor \(0.7\) is above accept \(0.6\)"):
        parse_project({**PROJECT, "route": {**ROUTE, "floor": 0.7}})
    with pytest.raises(ConfigError, match=r"route.per_label names \['Cat'\]"):
        parse_project({**PROJECT, "route": {**ROUTE, "per_label": {"Cat": {"accept": 0.9}}}})


def test_calibration_file_sets_the_band(tmp_path, caplog):
    path = tmp_path / "routed.yaml"
    path.write_text(yaml.safe_dump({**PROJECT, "route": ROUTE}))
    calibration_path(path).write_text(yaml.safe_dump({"route": {"per_label": {"Drone": {"floor": 0.3,
                                                                                          "accept": 0.9}}}}))
    cfg = load_project(path)
    assert (cfg.route.floor_for("Drone"), cfg.route.accept_for("Drone")) == (0.3, 0.9)
    assert cfg.route.accept_for("Stop Sign") == 0.6
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(PROJECT))
    calibration_path(plain).write_text(yaml.safe_dump({"route": {"per_label": {"Drone": {"accept": 0.9}}}}))
    assert load_project(plain).route is None and "has no route section" in caplog.text


def test_a_route_whose_student_is_not_trained_yet_answers_with_the_cascade(tmp_path):
    """A project set up to route before its first training: every image goes through the cascade, saying why,
    instead of failing on a weights file that Start Training has not written yet."""
    vlm, grounder = ScriptedVLM(lambda im, q: 0.8), ScriptedGrounder(CASCADE)
    cfg = parse_project({**PROJECT, "route": {**ROUTE, "student": str(tmp_path / "student.pt")}})
    res = Pipeline(cfg, vlm=vlm, grounder=grounder).run(Image.new("RGB", (100, 80)))
    assert grounder.calls == [["stop sign", "drone"]]
    assert res.detections.labels.tolist() == ["Stop Sign", "Drone"]
    assert res.route["path"] == "cascade" and "no student at" in res.route["why"]
