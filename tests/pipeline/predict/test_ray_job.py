"""`label-factory predict --ray`: the batch job on Ray actors (pipeline/predict/ray_job.py).

Fast tests: the actor plan from cluster resources (the writer both jobs share has its own tests in
tests/backends/autolabel/test_writer.py). Tests with Ray share ONE local Ray
(module fixture, 2 CPUs, loopback, no dashboard; start-up is ~15 s here): a fake actor that kills its
worker on one task (no models), and, marked slow, real actors with tiny models against a real Label
Studio: exactly once, an actor killed mid-run, a broken image, and an interrupted driver re-run."""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from pipeline import cli
from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.model_version import model_version
from pipeline.predict import ray_job
from pipeline.predict.runner import TaskOutcome
from pipeline.predict.writer import WriteOptions
from tests import REPO
from tests.doubles.images import sign_jpeg
from tests.doubles.label_studio import FakeLabelStudio, outcome
from tests.ls_helpers import assert_one_rectangle_prediction, project_with_broken_task

PROJECT = {"project_name": "ray-signs", "target_object": "stop sign", "label": "Stop Sign",
           "stages": {"filter": False, "ground": True, "verify": False, "identify": False}}


# -- fast: plan ------------------------------------------------------------------------------
def test_actor_plan_from_cluster_resources():
    assert ray_job.plan_actors({"CPU": 2.0}) == ray_job.ActorPlan(2, 1.0, 0.0)  # this machine
    assert ray_job.plan_actors({"CPU": 32.0, "GPU": 4.0}) == ray_job.ActorPlan(4, 4.0, 1.0)  # one per GPU
    assert ray_job.plan_actors({"CPU": 8.0, "GPU": 4.0}, gpus=0.5) == ray_job.ActorPlan(8, 1.0, 0.5)
    assert ray_job.plan_actors({"CPU": 2.0}, actors=5) == ray_job.ActorPlan(5, 1.0, 0.0)  # flags win
    assert ray_job.plan_actors({"CPU": 1.0}, cpus=4) == ray_job.ActorPlan(1, 4.0, 0.0)
    with pytest.raises(ray_job.batch.JobError):
        ray_job.plan_actors({"CPU": 2.0}, actors=0)


def test_forwarded_env_has_model_settings_and_no_secrets():
    env = ray_job.forwarded_env({"LF_GROUNDER_MODEL": "/models/owl", "LF_OPENVERSE_TOKEN": "s3cret",
                                 "ALLOWED_IMAGE_HOSTS": "img.example.com", "LABEL_STUDIO_API_KEY": "k", "HOME": "/r"})
    assert env == {"LF_GROUNDER_MODEL": "/models/owl", "ALLOWED_IMAGE_HOSTS": "img.example.com"}


def test_cli_ray_flags(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(PROJECT))
    args = cli.build_parser().parse_args(["predict", "--project", str(path), "--ray"])
    assert args.ray == "" and args.actors is None and args.tasks_per_call == 4  # no address: a local Ray
    assert cli.build_parser().parse_args(["predict", "--project", "p", "--ray", "auto"]).ray == "auto"
    assert cli.build_parser().parse_args(["predict", "--project", "p"]).ray is None  # the single-process job
    base = ["predict", "--project", str(path), "--label-studio-url", "http://127.0.0.1:1", "--api-key", "k", "--ray"]
    for flag in ("--actors", "--tasks-per-call", "--write-batch"):
        assert cli.main(base + [flag, "0"]) == 2
        assert f"{flag} must be at least 1" in capsys.readouterr().err


# -- with a local Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    os.environ.setdefault(ray_job.LOCAL_ONLY_ENV, "0")  # every Ray process on 127.0.0.1 (read at import)
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:  # workers inherit this environment: their MODEL_DIR (answer cache) in a temporary folder too
        before = os.environ.get("MODEL_DIR")
        os.environ["MODEL_DIR"] = before or str(tmp_path_factory.mktemp("ray-model-dir"))
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        finally:
            if before is None:
                os.environ.pop("MODEL_DIR")
    yield ray
    if started:
        ray.shutdown()


class PoisonActor:
    """PredictActor's interface without models: a task whose URL says 'poison' kills the worker,
    'broken' fails like a missing image, any other gets one box."""

    def __init__(self, project_path, project_text, project_id, label_config, label_studio_url, api_key, threads=1,
                 concurrency=None):
        self.version = model_version(load_project(project_path))

    def ready(self):
        return {"version": self.version, "pid": os.getpid()}

    def predict(self, tasks):
        out = []
        for t in tasks:
            url = t["data"]["image"]
            if "poison" in url:
                os._exit(1)
            if "broken" in url:
                out.append(TaskOutcome(t["id"], None, f"ImageFetchError: {url}: HTTP 404"))
            else:
                o = outcome(t["id"])
                o.prediction["model_version"] = self.version
                out.append(o)
        return out


def test_task_that_kills_its_worker_is_reported_not_retried_forever(ray_local, tmp_path):
    path = tmp_path / "ray-signs.yaml"
    path.write_text(yaml.safe_dump(PROJECT))
    cfg = load_project(path)
    urls = {i: f"/data/upload/1/{i}.jpg" for i in range(1, 10)}
    urls[4], urls[7] = "/data/upload/1/poison.jpg", "/data/upload/1/broken.jpg"
    client = FakeLabelStudio([{"id": i, "data": {"image": u}} for i, u in urls.items()], labeling_config(cfg))
    opts = ray_job.RayOptions(actors=2, cpus_per_actor=0.5, tasks_per_call=3, max_attempts=2)
    s, report = ray_job.run(client, cfg, 1, project_path=str(path), label_studio_url="http://127.0.0.1:1",
                            api_key="k", options=opts, progress=False, actor_class=PoisonActor,
                            write=WriteOptions(flush_seconds=0.1))

    assert {k: len(v) for k, v in client.stored.items()} == {i: 1 for i in urls if i not in (4, 7)}
    reasons = {f["task"]: f["reason"] for f in s.failed}
    assert set(reasons) == {4, 7} and reasons[7] == "ImageFetchError: /data/upload/1/broken.jpg: HTTP 404"
    assert reasons[4].startswith("WorkerDied: the worker predicting this task died 2 time(s)"), reasons[4]
    # killed in a call of 3 (no charge: any of them may be the culprit), then twice alone (charged): failed
    assert report.actors_died == 3 and report.actors_started == 5  # each death replaced
    assert report.retried_tasks >= 1 and (s.seen, s.predicted) == (9, 7)
    assert client.model_version == model_version(cfg) and s.project_version.startswith(model_version(cfg))


# -- slow: real actors, tiny models, a real Label Studio -----------------------------------------
@pytest.fixture
def tiny_project(tiny_owlv2_dir, tmp_path, monkeypatch):
    for k in ("ALLOWED_IMAGE_HOSTS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)

    def make(name: str):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            **PROJECT, "project_name": name, "extra_labels": ["Other"],
            "thresholds": {"grounding": 0.0, "max_boxes": 3},
            "providers": {"vlm": {"kind": "transformers", "model": "unused"},
                          "grounder": {"kind": "owlv2", "model": str(tiny_owlv2_dir), "device": "cpu"}}}))
        return path, load_project(path)
    return make


@pytest.mark.slow
def test_ray_job_predicts_every_task_once_and_reports_the_broken_one(ray_local, label_studio, tiny_project, capsys):
    path, cfg = tiny_project("ray-once")
    project, good, broken = project_with_broken_task(label_studio, cfg.project_name, labeling_config(cfg), 5)
    argv = ["predict", "--ray", "--project", str(path), "--label-studio-url", label_studio.url,
            "--api-key", label_studio.token, "--actors", "2", "--cpus-per-actor", "1", "--tasks-per-call", "2",
            "--quiet", "--json"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    version = model_version(cfg)
    assert summary["model_version"] == version and summary["ray"]["actors"] == 2
    assert (summary["seen"], summary["predicted"], summary["failed"]) == (6, 5, 1), summary
    assert summary["failed_by_reason"] == {"ImageFetchError": [broken.id]}
    assert "does-not-exist.jpg" in summary["failures"][0]["reason"]
    assert label_studio.token not in out.out + out.err
    ls = label_studio.client()
    for t in good:
        assert_one_rectangle_prediction(ls, t.id, version, set(cfg.labels()))
    assert list(ls.predictions.list(task=broken.id)) == []


@pytest.mark.slow
def test_actor_killed_mid_run_still_exactly_once(ray_local, label_studio, tiny_project):
    path, cfg = tiny_project("ray-kill")
    project, good, broken = project_with_broken_task(label_studio, cfg.project_name, labeling_config(cfg), 8)
    killed = []

    def kill_first_busy_actor(handle, tasks):  # the call was just submitted: its tasks are in flight
        if not killed:
            killed.append([t["id"] for t in tasks])
            ray_local.kill(handle, no_restart=True)

    opts = ray_job.RayOptions(actors=2, cpus_per_actor=1, tasks_per_call=2)
    s, report = ray_job.run(label_studio.client(), cfg, project.id, project_path=str(path),
                            label_studio_url=label_studio.url, api_key=label_studio.token, options=opts,
                            progress=False, on_dispatch=kill_first_busy_actor, write=WriteOptions(flush_seconds=0.2))
    assert killed and report.actors_died >= 1 and report.retried_tasks >= len(killed[0])
    assert (s.predicted, [f["task"] for f in s.failed]) == (8, [broken.id]), s.failed
    ls = label_studio.client()
    for t in good:
        assert_one_rectangle_prediction(ls, t.id, model_version(cfg), set(cfg.labels()))


class SlowImages(http.server.BaseHTTPRequestHandler):
    """Task images from a slow loopback host (an allowed image host): each takes DELAY seconds."""
    DELAY = 0.8

    def do_GET(self):
        time.sleep(self.DELAY)
        body = sign_jpeg(int(self.path.strip("/").split(".")[0]))
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_interrupted_driver_rerun_predicts_only_the_missing_tasks(ray_local, label_studio, tiny_project, monkeypatch):
    path, cfg = tiny_project("ray-interrupt")
    ls = label_studio.client()
    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowImages)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{images.server_address[1]}"
    monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", host)  # forwarded to the actors by the job
    project = ls.projects.create(title=cfg.project_name, label_config=labeling_config(cfg))
    n = 12
    ls.projects.import_tasks(project.id, request=[{"image": f"http://{host}/{i}.jpg"} for i in range(n)])
    version = model_version(cfg)

    def stored() -> dict:
        out = {}
        for p in ls.predictions.list(project=project.id):
            out[p.task] = out.get(p.task, 0) + 1
        return out

    # a second driver process joins this Ray, one actor, a task at a time (~1 s each); stopped after 2
    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "predict", "--ray", address, "--project", str(path),
         "--label-studio-url", label_studio.url, "--api-key", label_studio.token, "--actors", "1",
         "--concurrency", "1", "--tasks-per-call", "1", "--write-batch", "1", "--quiet", "--json"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 240
        while len(stored()) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no prediction stored in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    first = json.loads(out)
    after_stop = stored()
    assert first["interrupted"] is True and first["predicted"] == len(after_stop)
    assert 2 <= len(after_stop) <= n - 4 and set(after_stop.values()) == {1}, after_stop

    SlowImages.DELAY = 0.0  # the re-run
    try:
        opts = ray_job.RayOptions(actors=2, cpus_per_actor=1, tasks_per_call=2)
        s, _ = ray_job.run(ls, cfg, project.id, project_path=str(path), label_studio_url=label_studio.url,
                           api_key=label_studio.token, options=opts, progress=False,
                           write=WriteOptions(flush_seconds=0.2))
    finally:
        images.shutdown()
        images.server_close()
    assert (s.seen, s.already, s.predicted, s.failed) == (n, len(after_stop), n - len(after_stop), [])
    for t in ls.tasks.list(project=project.id):
        assert_one_rectangle_prediction(ls, t.id, version, set(cfg.labels()))


class OtherVersionActor(PoisonActor):
    def ready(self):
        return {"version": "someone-else-v0", "pid": os.getpid()}


def test_actors_that_cannot_load_or_disagree_on_the_version_stop_the_job(ray_local, tmp_path):
    path = tmp_path / "ray-signs.yaml"
    path.write_text(yaml.safe_dump({**PROJECT, "providers": {
        "vlm": {"kind": "transformers", "model": "unused"},
        "grounder": {"kind": "owlv2", "model": str(tmp_path / "no-such-model"), "device": "cpu"}}}))
    cfg = load_project(path)
    client = FakeLabelStudio([{"id": 1, "data": {"image": "/data/upload/1/1.jpg"}}], labeling_config(cfg))
    kw = dict(project_path=str(path), label_studio_url="http://127.0.0.1:1", api_key="k", progress=False,
              options=ray_job.RayOptions(actors=1, cpus_per_actor=0.5))
    with pytest.raises(ray_job.batch.JobError, match="no actor could run the job: .*no-such-model"):
        ray_job.run(client, cfg, 1, **kw)  # the real actor: its models do not load
    with pytest.raises(ray_job.batch.JobError, match="answers model_version 'someone-else-v0'"):
        ray_job.run(client, cfg, 1, actor_class=OtherVersionActor, **kw)
    assert client.stored == {}
