"""Video tasks against a real Label Studio 1.23: a generated video uploaded to a project made from
`label-factory config --video`, its tracks predicted by the `predict` job (the runner the backend uses, with
the generated world's own detector), stored by Label Studio and read back, and the track shown in Label
Studio's video editor in a real browser (Debian's /usr/bin/chromium via playwright; the screenshot is kept
as docs/images/video-track.png when LF_KEEP_SCREENSHOT is set).

The backend's deadline is exercised in-process through ``runner.predict_all`` (what the backend's
``predict`` calls): a video that cannot be labelled in time fails its task with the reason and the advice
to use `label-factory predict`."""
from __future__ import annotations

import os
import shutil

import pytest
from label_studio_sdk.label_interface import LabelInterface

from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.importer.ls_project import LabelStudioTarget
from pipeline.labelstudio.labeling_config import video_config
from pipeline.labelstudio.tracks import per_frame, read_tracks
from pipeline.predict import job as batch
from pipeline.predict import runner
from pipeline.video import synthetic
from pipeline.video.quality import tracking_quality
from tests import REPO
from tests.doubles.providers import ScriptedVLM

pytestmark = pytest.mark.slow
CFG = {"project_name": "video tracks", "target_object": "ball", "queries": {"ball": ["ball"], "crate": ["crate"]},
       "stages": {"filter": False}}


@pytest.fixture(scope="module")
def video_project(label_studio, tmp_path_factory):
    """A video project with one task: a 4 s WebM (VP8, which every browser plays) of two scenes."""
    work = tmp_path_factory.mktemp("video-ls")
    world = synthetic.world(seconds=4, scenes=2, seed=3)
    path = synthetic.write(world, work / "moving.webm", codec="libvpx", options={"deadline": "realtime",
                                                                                  "cpu-used": "8", "b": "800k"})
    cfg = parse_project(CFG)
    ls = label_studio.client()
    project = ls.projects.create(title="video tracks", label_config=video_config(cfg))
    url = LabelStudioTarget(label_studio.url, label_studio.token).upload(project.id, path)
    ls.projects.import_tasks(project.id, request=[{"data": {"video": url, "fps": world.fps}}])
    (task,) = ls.tasks.list(project=project.id).items
    return cfg, world, project, task


def _pipeline(cfg):
    return Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 0.9), grounder=synthetic.ColourGrounder())


def _predicted(label_studio, video_project):
    """The task's prediction, made by the predict job if an earlier test has not made it."""
    cfg, _, project, task = video_project
    ls = label_studio.client()
    if not ls.predictions.list(task=task.id):
        batch.run(ls, cfg, _pipeline(cfg), project.id, progress=False,
                  fetch=runner.fetcher(cfg, label_studio.url, label_studio.token))
    (pred,) = ls.predictions.list(task=task.id)
    return pred


def test_the_predict_job_stores_tracks_that_label_studio_gives_back(label_studio, video_project):
    cfg, world, project, task = video_project
    ls = label_studio.client()
    summary = batch.run(ls, cfg, _pipeline(cfg), project.id, progress=False,
                        fetch=runner.fetcher(cfg, label_studio.url, label_studio.token))
    assert summary.predicted == 1 and not summary.failed, summary.lines()
    (pred,) = ls.predictions.list(task=task.id)
    regions = pred.result
    assert regions and all(r["type"] == "videorectangle" and r["from_name"] == "box" for r in regions)
    first = regions[0]["value"]
    assert first["framesCount"] == world.frames and first["duration"] == pytest.approx(4.0, abs=0.05)
    assert all(r["value"]["sequence"][-1]["enabled"] is False for r in regions)  # every track ends
    assert {r["value"]["labels"][0] for r in regions} == {"ball", "crate"}
    # what Label Studio stored, interpolated as its video editor does, follows the true trajectories
    shown = per_frame(read_tracks(regions, world.width, world.height), world.frames)
    q = tracking_quality(world.tracks(), shown, world.frames)
    assert q["IDSW"] == 0 and q["MOTA"] > 0.8 and q["IDF1"] > 0.85, q
    assert ls.projects.get(project.id).model_version == summary.model_version
    again = batch.run(ls, cfg, _pipeline(cfg), project.id, progress=False,
                      fetch=runner.fetcher(cfg, label_studio.url, label_studio.token))
    assert again.already == 1 and again.predicted == 0


def test_the_backend_deadline_fails_the_video_task_with_the_advice_to_use_predict(label_studio, video_project,
                                                                                   monkeypatch):
    import time

    monkeypatch.setenv("LF_ANSWER_CACHE", "0")  # the grounder's answers to these frames are cached otherwise
    cfg, _, project, task = video_project
    slow = synthetic.ColourGrounder()
    boxes = slow.boxes
    slow.boxes = lambda image, queries: (time.sleep(0.6), boxes(image, queries))[1]  # 4 keyframes: 2.4 s
    pipe = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 0.9), grounder=slow)
    req = runner.prepare(cfg, pipe, project.id, LabelInterface(config=project.label_config))
    fetch = runner.fetcher(cfg, label_studio.url, label_studio.token)
    t0 = time.monotonic()
    (out,) = runner.predict_all([{"id": task.id, "data": task.data}], lambda t: req.run(t, fetch=fetch),
                                deadline_seconds=2.0)
    assert time.monotonic() - t0 < 2.0
    assert out.prediction is None and "label-factory predict" in out.error and "frames took" in out.error


def test_a_predicted_track_in_the_video_editor(label_studio, video_project, page):
    _, _, project, task = video_project
    pred = _predicted(label_studio, video_project)
    shot = label_studio.data_dir / "video-track.png"
    page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task.id}")
    page.wait_for_function("n => document.querySelectorAll('.lsf-outliner-item').length === n",
                           arg=len(pred.result))
    page.wait_for_function("() => { const v = document.querySelector('video'); "
                           "return v && v.readyState >= 2 && v.videoWidth > 0; }")
    listed = page.locator(".lsf-outliner-item").all_inner_texts()
    assert sum("ball" in t for t in listed) == sum(r["value"]["labels"] == ["ball"] for r in pred.result)
    page.locator(".lsf-outliner-item").first.click()  # select the first track: its box is drawn
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.getenv("LF_KEEP_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "images" / "video-track.png")


def test_evaluate_and_export_read_the_reviewed_tracks_back(label_studio, video_project, tmp_path):
    """The reviewed annotation (the prediction accepted, one track moved 3 px) is read back from Label Studio by
    `label-factory evaluate` (tracking quality per model_version) and `label-factory export` (frames with
    their interpolated boxes)."""
    import json

    from pipeline import cli

    _, world, project, task = video_project
    ls = label_studio.client()
    pred = _predicted(label_studio, video_project)
    reviewed = json.loads(json.dumps(pred.result))
    for key in reviewed[0]["value"]["sequence"]:  # 3 px right: still a match at IoU 0.5, not at 0.95
        key["x"] += 3 / world.width * 100
    ls.annotations.create(id=task.id, result=reviewed)
    conn = ["--ls-project", str(project.id), "--label-studio-url", label_studio.url, "--api-key", label_studio.token]

    assert cli.main(["evaluate", *conn, "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["tasks"] == 1 and report["project"]["control"] == "box"
    (figures,) = report["versions"].values()
    assert figures["frames"] == world.frames and figures["IDSW"] == 0
    assert figures["MOTA"] > 0.9 and 0.5 < figures["HOTA"] < 1, figures  # the moved track costs HOTA only

    assert cli.main(["export", *conn, "--out", str(tmp_path / "yolo"), "--video-stride", "20", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "yolo" / "manifest.json").read_text())
    assert [f["frame"] for f in manifest["files"]] == list(range(0, world.frames, 20))
    assert manifest["source"]["project_id"] == project.id and not manifest["left_out"]["video_failed"]
    assert sum(f["boxes"] for f in manifest["files"]) > 0
