"""`label-factory predict`: the batch job that pre-annotates a Label Studio project through the SDK.

Fast tests drive the job (pipeline/predict/job.py) with a fake SDK client, an injected image
fetcher and scripted providers; the slow one runs the CLI in-process against a real Label Studio
with tiny random-weight models (thresholds 0: the protocol is asserted, not the quality)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

from pipeline import cli
from pipeline.cascade import Pipeline
from pipeline.config import load_project, parse_project
from pipeline.images import open_image
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.media import ImageFetchError
from pipeline.model_version import model_version
from pipeline.predict import job as batch
from pipeline.predict import runner
from pipeline.predict.writer import WriteOptions
from tests.doubles.label_studio import FakeLabelStudio, page_of
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM
from tests.ls_helpers import assert_one_rectangle_prediction, project_with_broken_task

PROJECT = {"project_name": "job-signs", "target_object": "stop sign", "label": "Stop Sign",
           "extra_labels": ["Other"], "falcon_queries": ["stop sign"],
           "stages": {"filter": True, "ground": True, "verify": True, "identify": False},
           "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5}}


# -- fakes ----------------------------------------------------------------------------------------
def _image(size):
    return Image.new("RGB", size, (200, 30, 30))


def fetcher(calls: list):
    """URL -> image: ``gone`` is a 404, ``corrupt`` is not an image, ``WxH`` is a red image of that size."""
    def fetch(url, task_id):
        calls.append(task_id)
        if "gone" in url:
            raise ImageFetchError(f"{url}: HTTP 404 from http://ls{url}")
        if "corrupt" in url:
            return open_image(b"not an image at all")
        w, h = (int(v) for v in url.rsplit("/", 1)[1].split(".")[0].split("x"))
        return _image((w, h))
    return fetch


def model_error_on_13px(image, question):
    if image.size == (13, 13):
        raise RuntimeError("CUDA out of memory (scripted)")
    return 0.9


@pytest.fixture
def job():
    cfg = parse_project(PROJECT)
    pipe = Pipeline(cfg, vlm=ScriptedVLM(model_error_on_13px),
                    grounder=ScriptedGrounder([([2, 2, 30, 20], 0.8, "stop sign")]))
    return cfg, pipe, labeling_config(cfg)


def _task(tid, url, versions=()):
    return {"id": tid, "data": {"image": url}, "predictions": [{"model_version": v} for v in versions]}


# -- fast: selection --------------------------------------------------------------------------
def test_only_missing_selection_by_exact_model_version():
    v = "job-signs-abc123-transformers+owlv2"
    assert batch.needs_prediction(_task(1, "u"), v)
    assert not batch.needs_prediction(_task(1, "u", [v]), v)
    assert batch.needs_prediction(_task(1, "u", ["job-signs-OLD-transformers+owlv2"]), v)  # another version
    assert batch.needs_prediction(_task(1, "u", [v + "+identify-v2"]), v)  # not a prefix match
    assert batch.needs_prediction(_task(1, "u", [v]), v, only_missing=False)
    sdk_like = SimpleNamespace(id=1, data={}, predictions=[SimpleNamespace(model_version=v)])  # SDK objects
    assert not batch.needs_prediction(sdk_like, v)
    assert batch.needs_prediction(SimpleNamespace(id=2, data={}, predictions=None), v)
    assert batch.as_task(sdk_like) == {"id": 1, "data": {}}


def test_find_project_by_title():
    client = FakeLabelStudio([], "")
    assert batch.find_project_id(client, "job-signs") == 7
    with pytest.raises(batch.JobError, match="no Label Studio project titled 'nope'"):
        batch.find_project_id(client, "nope")
    client.projects.list = lambda page, page_size, **kw: page_of(
        [SimpleNamespace(id=3, title="t"), SimpleNamespace(id=4, title="t")], page, page_size)
    with pytest.raises(batch.JobError, match=r"ids 3, 4\): pass --ls-project"):
        batch.find_project_id(client, "t")


def test_a_version_label_studio_has_no_prediction_of_is_reported_as_such():
    """The fake refuses a model_version as Label Studio does (the SDK's ApiError, Label Studio's body), so the job
    reaches lsapi's VersionNotStored (before, the fake's own error class went past it as an unknown error)."""
    client = FakeLabelStudio([{"id": 1, "data": {}, "predictions": [{"model_version": "v1"}]}], "")
    said = batch._use_version(client, 7, "v2")
    assert said.startswith("NOT set to v2 (VersionNotStored: Label Studio project 7 has no prediction of 'v2'")
    assert client.model_version == "label-factory"
    assert batch._use_version(client, 7, "v1").startswith("v1 (was 'label-factory')")


# -- fast: the job -----------------------------------------------------------------------------
def test_job_counts_failures_and_rerun_predicts_nothing_twice(job):
    cfg, pipe, config = job
    version = model_version(cfg)  # the backend's model_version
    tasks = [_task(1, "/data/upload/7/40x30.jpg"), _task(2, "/data/upload/7/60x40.jpg", [version]),
             _task(3, "/data/upload/7/gone.jpg"), _task(4, "/data/upload/7/corrupt.jpg"),
             _task(5, "/data/upload/7/13x13.jpg"), _task(6, "/data/upload/7/50x50.jpg", ["an-old-version"]),
             _task(7, "/data/upload/7/32x32.jpg")]
    client, calls = FakeLabelStudio(tasks, config, refuse={7}), []
    s = batch.run(client, cfg, pipe, 7, batch_size=3, progress=False, fetch=fetcher(calls), concurrency=2)

    assert s.model_version == version
    assert (s.seen, s.predicted, s.already, len(s.failed)) == (7, 2, 1, 4)
    assert sorted(calls) == [1, 3, 4, 5, 6, 7]  # task 2 already had this version: not even fetched
    assert [c["task"] for c in client.created] == [1, 6]
    for c in client.created:
        assert c["model_version"] == version and c["result"] and 0 <= c["score"] <= 1
        assert {r["value"]["rectanglelabels"][0] for r in c["result"]} == {"Stop Sign"}
    by = {k: [f["task"] for f in v] for k, v in s.failed_by_reason().items()}
    assert by == {"ImageFetchError": [3], "ImageLoadError": [4], "RuntimeError": [5], "predictions.create": [7]}
    reasons = {f["task"]: f["reason"] for f in s.failed}
    assert "gone.jpg: HTTP 404" in reasons[3] and "CUDA out of memory" in reasons[5]
    assert reasons[7] == "predictions.create: HTTP 400: task 7: result does not match the labeling config"
    assert client.bulk_sizes[-1] >= 1 and client.singles[-1] == 7  # the refused bulk write, then one create each
    assert all(c["page_size"] == 3 and c["resolve_uri"] is False and "predictions" in c["include"]
               for c in client.list_calls)
    assert [c["page"] for c in client.list_calls] == [1, 2, 3]  # 7 tasks: never page 4
    assert client.model_version == version and version in s.project_version  # the Prediction score column
    assert s.seconds_per_task is not None and s.seconds_per_task >= 0

    text = "\n".join(s.lines())
    for needle in ("tasks seen: 7", "predicted: 2", "already predicted with this model_version: 1",
                   "failed: 4", "task 3: ImageFetchError", "task 7: predictions.create", "seconds per task"):
        assert needle in text, text
    d = s.to_dict()
    assert d["failed_by_reason"]["ImageFetchError"] == [3] and d["skipped_already_predicted"] == 1
    json.dumps(d)

    # again: the two stored ones are skipped, only the failed tasks are tried again
    calls.clear()
    s2 = batch.run(client, cfg, pipe, 7, batch_size=3, progress=False, fetch=fetcher(calls))
    assert (s2.seen, s2.predicted, s2.already, len(s2.failed)) == (7, 0, 3, 4)
    assert sorted(calls) == [3, 4, 5, 7] and len(client.created) == 2


def test_job_writes_through_the_bulk_writer(job):
    cfg, pipe, config = job
    tasks = [_task(i, f"/data/upload/7/{20 + i}x20.jpg") for i in range(1, 8)]
    client = FakeLabelStudio(tasks, config)
    s = batch.run(client, cfg, pipe, 7, batch_size=2, progress=False, fetch=fetcher([]),
                  write=WriteOptions(batch=3, rate=0, flush_seconds=60))
    assert client.bulk_sizes == [3, 3, 1] and client.singles == []  # no single creates
    assert sorted(c["task"] for c in client.created) == list(range(1, 8))
    assert (s.predicted, s.failed, s.write_requests) == (7, [], 3)
    assert s.boxes == sum(len(c["result"]) for c in client.created) and s.empty == 0
    assert "Label Studio writes: 3 request(s)" in "\n".join(s.lines()) and s.to_dict()["write_requests"] == 3


def test_ctrl_c_writes_what_finished_and_a_rerun_continues(job):
    cfg, pipe, config = job
    tasks = [_task(i, f"/data/upload/7/{20 + i}x20.jpg") for i in range(1, 8)]
    client, calls = FakeLabelStudio(tasks, config), []
    plain = fetcher(calls)

    def fetch(url, task_id):
        if task_id == 5:
            raise KeyboardInterrupt  # Ctrl-C while the 3rd page runs
        return plain(url, task_id)

    s = batch.run(client, cfg, pipe, 7, batch_size=2, progress=False, fetch=fetch, concurrency=1,
                  write=WriteOptions(batch=100, flush_seconds=60))
    assert s.interrupted and s.to_dict()["interrupted"] is True and "interrupted:" in "\n".join(s.lines())
    assert sorted(c["task"] for c in client.created) == [1, 2, 3, 4] and s.predicted == 4  # the finished pages
    assert client.model_version == model_version(cfg)

    calls.clear()
    s2 = batch.run(client, cfg, pipe, 7, batch_size=2, progress=False, fetch=plain)
    assert not s2.interrupted and (s2.already, s2.predicted) == (4, 3) and sorted(calls) == [5, 6, 7]
    assert sorted(c["task"] for c in client.created) == list(range(1, 8))


def test_no_only_missing_predicts_every_task_again(job):
    cfg, pipe, config = job
    version = model_version(cfg)
    client = FakeLabelStudio([_task(1, "/data/upload/7/40x30.jpg", [version])], config)
    s = batch.run(client, cfg, pipe, 7, only_missing=False, progress=False, fetch=fetcher([]))
    assert (s.predicted, s.already) == (1, 0) and len(client.created) == 1


def test_limit_and_dry_run(job):
    cfg, pipe, config = job
    tasks = [_task(i, f"/data/upload/7/{20 + i}x20.jpg") for i in range(1, 8)]
    tasks[0]["predictions"] = [{"model_version": model_version(cfg)}]
    client, calls = FakeLabelStudio(tasks, config), []
    s = batch.run(client, cfg, pipe, 7, limit=3, batch_size=2, progress=False, fetch=fetcher(calls))
    assert (s.predicted, s.already, s.seen) == (3, 1, 4) and s.stopped_at_limit  # skipped ones do not count
    assert sorted(calls) == [2, 3, 4] and "stopped at --limit 3" in "\n".join(s.lines())

    vlm = ScriptedVLM(lambda im, q: pytest.fail("dry run must not run models"))
    dry = Pipeline(cfg, vlm=vlm, grounder=ScriptedGrounder([]))
    calls.clear()
    s = batch.run(client, cfg, dry, 7, dry_run=True, progress=False, fetch=fetcher(calls))
    assert (s.seen, s.predicted, s.already) == (7, 3, 4) and calls == [] and len(client.created) == 3
    assert "would predict: 3" in "\n".join(s.lines()) and s.seconds_per_task is None


def test_config_without_an_output_stops_the_job(job):
    cfg, pipe, _ = job
    client = FakeLabelStudio([_task(1, "u")], '<View><Image name="i" value="$i"/><Choices name="c" toName="i">'
                                         '<Choice value="a"/></Choices></View>')
    with pytest.raises(batch.JobError, match="no output label-factory can fill .*<Choices name='c'> .*classification"):
        batch.run(client, cfg, pipe, 7, progress=False, fetch=fetcher([]))
    assert client.list_calls == []


def test_cli_needs_label_studio(monkeypatch, tmp_path, capsys):
    for k in ("LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(PROJECT))
    assert cli.main(["predict", "--project", str(path)]) == 2
    assert "needs a URL and an API key" in capsys.readouterr().err
    assert cli.main(["predict", "--project", str(path), "--label-studio-url", "http://x", "--api-key", "k",
                     "--limit", "0"]) == 2


# -- slow: real Label Studio, tiny models, the CLI in-process --------------------------------------


@pytest.mark.slow
def test_predict_job_against_label_studio(label_studio, tiny_qwen_dir, tiny_owlv2_dir, tmp_path, monkeypatch,
                                          capsys):
    for k in ("ALLOWED_IMAGE_HOSTS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    path = tmp_path / "predict-job-signs.yaml"
    path.write_text(yaml.safe_dump({
        "project_name": "predict-job-signs", "target_object": "stop sign", "label": "Stop Sign",
        "extra_labels": ["Other"], "falcon_queries": ["stop sign"],
        "stages": {"filter": True, "ground": True, "verify": True, "identify": False},
        "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 3},
        "providers": {"vlm": {"kind": "transformers", "model": str(tiny_qwen_dir), "device": "cpu"},
                      "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}},
    }))
    cfg = load_project(path)
    ls = label_studio.client()
    project, good, broken = project_with_broken_task(label_studio, cfg.project_name, labeling_config(cfg), 4)
    runner.pipelines.clear()

    # 1st run: URL and legacy token as options, project found by the YAML's project_name, pages of 2
    argv = ["predict", "--project", str(path), "--label-studio-url", label_studio.url,
            "--api-key", label_studio.token, "--batch-size", "2", "--quiet", "--json"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    version = model_version(cfg)  # what the backend reports for this YAML
    assert summary["project"] == project.id and summary["model_version"] == version
    assert (summary["seen"], summary["predicted"], summary["skipped_already_predicted"], summary["failed"]) \
        == (5, 4, 0, 1), summary
    assert summary["failed_by_reason"] == {"ImageFetchError": [broken.id]}
    (failure,) = summary["failures"]
    assert failure["task"] == broken.id and "does-not-exist.jpg: HTTP 500" in failure["reason"]  # Label Studio's
    assert summary["seconds_per_task"] > 0
    assert "--only-missing (default)" in out.err and label_studio.token not in out.out + out.err

    labels = set(cfg.labels())
    for t in good:
        assert_one_rectangle_prediction(ls, t.id, version, labels)
    assert list(ls.predictions.list(task=broken.id)) == []

    # 2nd run: URL and a personal access token from the environment, project by id: nothing new
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.personal_access_token())
    assert cli.main(["predict", "--project", str(path), "--ls-project", str(project.id), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "tasks seen: 5" in text and "predicted: 0" in text, text
    assert "skipped, already predicted with this model_version: 4" in text, text
    assert f"task {broken.id}: ImageFetchError" in text, text  # tried again, still broken, named
    for t in good:
        assert len(list(ls.predictions.list(task=t.id))) == 1
    assert list(ls.predictions.list(task=broken.id)) == []
