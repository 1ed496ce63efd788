"""The predict jobs' one prediction writer (pipeline/predict/writer.py).

Fast tests: the writer against a fake Label Studio that loses answers, refuses or silently drops
predictions. Slow tests: `label-factory predict` (the single-process job, in-process, scripted models)
against a real Label Studio 1.23, every HTTP request of its SDK client recorded: predictions go through
the bulk endpoint, exactly one per task; a task whose prediction Label Studio refuses (the task was
deleted while the job ran) is reported with Label Studio's reason and the others land; Ctrl-C writes
what had finished, exits 130, and a re-run predicts the rest."""
from __future__ import annotations

import json
import time

import httpx
import label_studio_sdk
import pytest
import requests
import yaml

from pipeline import cli
from pipeline.cascade import Pipeline
from pipeline.config import load_project
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.predict import job as batch
from pipeline.predict import runner
from pipeline.predict.writer import PredictionWriter, WriteOptions
from pipeline.retry import RetryPolicy
from tests.doubles.images import IMAGE_SIZE
from tests.doubles.label_studio import FakeLabelStudio, outcome
from tests.doubles.providers import ScriptedGrounder, ScriptedVLM
from tests.ls_helpers import project_with_broken_task


def regions(prediction: dict) -> int:
    return len(prediction["result"])


def write_all(client, outcomes, existing=None, **options):
    s = batch.Summary(1, "v1")
    w = PredictionWriter(client, 1, "v1", s, regions, options=WriteOptions(**options),
                         retry=RetryPolicy(attempts=3, backoff=0, jitter=0))
    for o in outcomes:
        w.put(o, (existing or {}).get(o.task_id, 0))
    w.close()
    return s, w


# -- fast: the writer against a fake Label Studio ----------------------------------------------------
def test_writer_writes_in_bulk_batches_and_counts():
    client = FakeLabelStudio()
    s, w = write_all(client, [outcome(i, n_boxes=i % 2) for i in range(1, 8)], batch=3, flush_seconds=5)
    assert client.bulk_sizes == [3, 3, 1] and client.singles == []
    assert sorted(client.stored) == list(range(1, 8)) and all(len(v) == 1 for v in client.stored.values())
    assert (s.predicted, s.boxes, s.empty, s.failed) == (7, 4, 3, []) and w.requests == s.write_requests == 3


def test_writer_answer_lost_after_landing_is_not_written_twice():
    client = FakeLabelStudio(lose=1)  # the first write lands, then its answer times out
    s, _ = write_all(client, [outcome(1), outcome(2)], batch=10, flush_seconds=0.05)
    assert {k: len(v) for k, v in client.stored.items()} == {1: 1, 2: 1}
    assert client.bulk_sizes == [2] and s.predicted == 2 and s.failed == []


def test_writer_answer_lost_judged_against_the_predictions_a_task_already_had():
    # --no-only-missing: task 1 already has a prediction of this version; a write that never arrived
    # (connection reset) must be sent again, not taken for landed because the old prediction is there
    client = FakeLabelStudio([{"id": 1, "predictions": [{"model_version": "v1"}]}, {"id": 2}], lose_unstored=1)
    s, _ = write_all(client, [outcome(1), outcome(2)], existing={1: 1}, batch=10, flush_seconds=0.05)
    assert {k: len(v) for k, v in client.stored.items()} == {1: 2, 2: 1}
    assert client.bulk_sizes == [2, 2] and s.predicted == 2 and s.failed == []


def test_writer_refused_or_dropped_predictions_fail_their_task_only():
    client = FakeLabelStudio(refuse_bulk=True, refuse={2})  # 400 for the batch: one create per task
    s, _ = write_all(client, [outcome(1), outcome(2), outcome(3)], batch=10, flush_seconds=0.05)
    assert sorted(client.stored) == [1, 3] and client.singles == [1, 2, 3]
    assert s.predicted == 2 and [f["task"] for f in s.failed] == [2]
    assert s.failed[0]["reason"].startswith("predictions.create: HTTP 400: task 2: result does not match")

    client = FakeLabelStudio(drop={2}, refuse={2})  # created < sent: the missing one gets its own reason
    s, _ = write_all(client, [outcome(1), outcome(2), outcome(3)], batch=10, flush_seconds=0.05)
    assert sorted(client.stored) == [1, 3] and client.singles == [2] and [f["task"] for f in s.failed] == [2]


def test_writer_paces_to_the_write_rate():
    client = FakeLabelStudio()
    t0 = time.monotonic()
    s, _ = write_all(client, [outcome(i) for i in range(1, 7)], batch=2, rate=10.0, flush_seconds=5)
    assert s.predicted == 6 and client.bulk_sizes == [2, 2, 2]
    assert time.monotonic() - t0 >= 0.4 - 0.02  # 2 predictions at 10/s: 0.2 s before each later write


# -- slow: `label-factory predict` against a real Label Studio ----------------------------------------
class Recorder:
    """Every request the job's label-studio-sdk client sends: (method, path, JSON body)."""

    def __init__(self, monkeypatch):
        self.seen: list[tuple[str, str, object]] = []
        real = label_studio_sdk.LabelStudio

        def client(**kw):  # as pipeline/predict/cli.py makes it, over an httpx client that records
            hooks = {"request": [lambda r: self.seen.append(
                (r.method, r.url.path, json.loads(r.content) if r.content else None))]}
            return real(**kw, httpx_client=httpx.Client(timeout=kw.get("timeout"), event_hooks=hooks))

        monkeypatch.setattr(label_studio_sdk, "LabelStudio", client)

    def posts(self, path_end: str) -> list:
        return [body for method, path, body in self.seen if method == "POST" and path.rstrip("/").endswith(path_end)]

    def clear(self):
        self.seen.clear()


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    """A project YAML whose pipeline is scripted (every image: one box), and the recorder."""
    for k in ("ALLOWED_IMAGE_HOSTS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    path = tmp_path / "writer-signs.yaml"
    path.write_text(yaml.safe_dump({"project_name": "writer-signs", "target_object": "stop sign",
                                    "label": "Stop Sign", "falcon_queries": ["stop sign"],
                                    "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5}}))
    vlm, grounder = ScriptedVLM(lambda im, q: 0.9), ScriptedGrounder([([10, 10, 50, 40], 0.8, "stop sign")])
    monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda cfg: Pipeline(cfg, vlm=vlm, grounder=grounder))
    runner.pipelines.clear()
    yield path, load_project(path), Recorder(monkeypatch)
    runner.pipelines.clear()


def predict(label_studio, path, project_id, capsys, *extra) -> tuple[int, dict]:
    rc = cli.main(["predict", "--project", str(path), "--ls-project", str(project_id), "--label-studio-url",
                   label_studio.url, "--api-key", label_studio.token, "--quiet", "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def stored(label_studio, project_id: int) -> dict:
    out: dict = {}
    for p in label_studio.client().predictions.list(project=project_id):
        out.setdefault(p.task, []).append(p)
    return out


@pytest.mark.slow
def test_predict_stores_one_prediction_per_task_through_the_bulk_endpoint(label_studio, scripted, capsys):
    path, cfg, rec = scripted
    project, good, broken = project_with_broken_task(label_studio, "writer-bulk", labeling_config(cfg), 9)
    rc, s = predict(label_studio, path, project.id, capsys, "--batch-size", "4", "--write-batch", "4")
    assert rc == 0 and (s["predicted"], s["failed_by_reason"]) == (9, {"ImageFetchError": [broken.id]}), s

    bulk = rec.posts(f"/api/projects/{project.id}/import/predictions")
    assert rec.posts("/api/predictions") == []  # not one single create
    assert len(bulk) == s["write_requests"] and all(1 <= len(b) <= 4 for b in bulk), [len(b) for b in bulk]
    assert sorted(p["task"] for b in bulk for p in b) == sorted(t.id for t in good)  # each task once
    got = stored(label_studio, project.id)
    assert sorted(got) == sorted(t.id for t in good) and all(len(v) == 1 for v in got.values())
    for ps in got.values():
        (p,) = ps
        assert p.model_version == s["model_version"] and len(p.result) == 1
        assert (p.result[0]["original_width"], p.result[0]["original_height"]) == IMAGE_SIZE
    assert s["project_model_version"].startswith(s["model_version"])

    rec.clear()  # again: nothing left to write
    rc, s = predict(label_studio, path, project.id, capsys)
    assert rc == 0 and (s["predicted"], s["skipped_already_predicted"], s["write_requests"]) == (0, 9, 0)
    assert rec.posts(f"/api/projects/{project.id}/import/predictions") == []


@pytest.mark.slow
def test_a_refused_prediction_is_reported_with_label_studios_reason_and_the_rest_land(
        label_studio, scripted, capsys, monkeypatch):
    path, cfg, rec = scripted
    project, good, _broken = project_with_broken_task(label_studio, "writer-refused", labeling_config(cfg), 5)
    victim = good[2].id
    fetch = runner.IMAGE_FETCHER

    def deleting_fetch(url, task_id, **kw):  # the task is deleted in Label Studio while it is predicted
        if task_id == victim:
            r = requests.delete(f"{label_studio.url}/api/tasks/{victim}/", headers=label_studio.headers(), timeout=30)
            assert r.status_code == 204, r.text
        return fetch(url, task_id, **kw)

    monkeypatch.setattr(runner, "IMAGE_FETCHER", deleting_fetch)
    rc, s = predict(label_studio, path, project.id, capsys)
    assert rc == 0 and s["predicted"] == 4, s
    assert sorted(s["failed_by_reason"]) == ["ImageFetchError", "predictions.create"], s
    reason = next(f["reason"] for f in s["failures"] if f["task"] == victim)
    assert reason.startswith("predictions.create: HTTP 400: "), reason
    assert f'Invalid pk "{victim}" - object does not exist' in reason, reason  # Label Studio's own words
    # the bulk write holding it was refused (400: nothing stored), then one create per task it held
    bulk = rec.posts(f"/api/projects/{project.id}/import/predictions")
    refused = next(b for b in bulk if victim in [p["task"] for p in b])
    singles = [b["task"] for b in rec.posts("/api/predictions")]
    assert sorted(singles) == sorted(p["task"] for p in refused), (singles, refused)
    got = stored(label_studio, project.id)
    assert sorted(got) == sorted(t.id for t in good if t.id != victim) and all(len(v) == 1 for v in got.values())


@pytest.mark.slow
def test_ctrl_c_writes_what_finished_exits_130_and_a_rerun_predicts_the_rest(
        label_studio, scripted, capsys, monkeypatch):
    path, cfg, rec = scripted
    project, good, broken = project_with_broken_task(label_studio, "writer-ctrl-c", labeling_config(cfg), 7)
    order = [batch.as_task(t)["id"] for t in batch.list_tasks(label_studio.client(), project.id, 2)]  # as listed
    stop_at = order[4]  # the 3rd page of 2
    fetch = runner.IMAGE_FETCHER

    def interrupted_fetch(url, task_id, **kw):
        if task_id == stop_at:
            raise KeyboardInterrupt
        return fetch(url, task_id, **kw)

    monkeypatch.setattr(runner, "IMAGE_FETCHER", interrupted_fetch)
    rc, s = predict(label_studio, path, project.id, capsys, "--batch-size", "2", "--concurrency", "1")
    finished = sorted(i for i in order[:4] if i != broken.id)
    assert rc == 130 and s["interrupted"] is True and s["predicted"] == len(finished), s
    got = stored(label_studio, project.id)
    assert sorted(got) == finished and all(len(v) == 1 for v in got.values())
    assert rec.posts("/api/predictions") == []

    monkeypatch.setattr(runner, "IMAGE_FETCHER", fetch)
    rc, s = predict(label_studio, path, project.id, capsys)
    assert rc == 0 and not s["interrupted"] and (s["skipped_already_predicted"], s["predicted"]) == (
        len(finished), 7 - len(finished)), s
    got = stored(label_studio, project.id)
    assert sorted(got) == sorted(t.id for t in good) and all(len(v) == 1 for v in got.values())
