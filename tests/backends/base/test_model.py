"""The label-studio-ml 2.x contract in backends/base: routes, auth, JSON errors, the per-project cache."""
from __future__ import annotations

import contextvars
import json
import logging
import threading
import time

import pytest
from semver import Version

import backends.base.model as base_model
from backends.base import ExtraParamsError, LabelConfigError, LabelStudioMLBase, ModelResponse, init_app
from backends.base.api import on_worker_start, worker_of
from backends.base.cache import SqliteCache, get_cache
from pipeline.config import parse_project
from pipeline.labelstudio.labeling_config import labeling_config

CONFIG = labeling_config(parse_project({"project_name": "t", "target_object": "stop sign", "label": "Stop Sign",
                                        "falcon_queries": {"Stop Sign": ["stop sign", "octagon"],
                                                           "Yield": ["yield sign"]}}))


class EchoModel(LabelStudioMLBase):
    """Answers one box per task; records what it was given."""
    seen: list = []

    def setup(self):
        self.set("model_version", "echo-" + (self.extra_params.get("flavour") or "plain"))

    def predict(self, tasks, context=None, **kwargs):
        EchoModel.seen.append({"context": context, "kwargs": kwargs, "project": self.project_id})
        from_name, to_name, value = self.get_first_tag_occurence("RectangleLabels", "Image")
        return ModelResponse(predictions=[
            {"result": [{"from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
                         "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["Stop Sign"]}}],
             "score": 0.5} for _ in tasks])

    def fit(self, event, data, **kwargs):
        return {"event": event, "n": len(data)}


class ListModel(LabelStudioMLBase):
    def predict(self, tasks, context=None, **kwargs):
        return [{"result": [], "model_version": "list-1"} for _ in tasks]


class BrokenModel(LabelStudioMLBase):
    def predict(self, tasks, context=None, **kwargs):
        raise KeyError("weights/missing.bin")


@pytest.fixture(autouse=True)
def _model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model-dir"))
    for k in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PREDICT_CONCURRENCY",
              "PREDICT_SLOT_WAIT", "PREDICT_MAX_REQUESTS"):
        monkeypatch.delenv(k, raising=False)


def test_health_metrics_and_predict_contract():
    c = init_app(EchoModel).test_client()
    assert c.get("/health").json == {"status": "UP", "model_class": "EchoModel"}
    assert c.get("/").json["status"] == "UP"
    assert c.get("/metrics").json["worker"]["predict"] == {"in_flight": 0, "limit": None, "served": 0,
                                                           "refused_busy": 0, "slots": 4, "slots_busy": 0,
                                                           "slots_waiting": 0, "slot_wait": 5.0}
    r = c.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "x"}}, {"id": 2, "data": {"image": "y"}}],
                                 "project": "7.1712345678", "label_config": CONFIG,
                                 "params": {"login": None, "password": None, "context": {"result": []}}})
    assert r.status_code == 200
    body = r.json
    assert body["model_version"] == "echo-plain"
    assert [p["model_version"] for p in body["results"]] == ["echo-plain"] * 2  # filled in per prediction
    assert body["results"][0]["result"][0]["from_name"] == "label"
    assert EchoModel.seen[-1]["project"] == "7" and EchoModel.seen[-1]["context"] == {"result": []}
    assert EchoModel.seen[-1]["kwargs"] == {"login": None, "password": None}
    assert c.get("/metrics").json["worker"]["predict"]["served"] == 1


def test_plain_list_predictions_pass_through():
    c = init_app(ListModel).test_client()
    r = c.post("/predict", json={"tasks": [{"id": 1, "data": {}}], "project": "1.2", "label_config": CONFIG})
    assert r.json["results"] == [{"result": [], "model_version": "list-1"}]
    assert r.json["model_version"] == LabelStudioMLBase.INITIAL_MODEL_VERSION


def test_setup_stores_extra_params_before_setup_runs():
    c = init_app(EchoModel).test_client()
    r = c.post("/setup", json={"project": "3.99", "schema": CONFIG, "hostname": "http://x", "access_token": "t",
                               "extra_params": {"flavour": "spicy"}})
    assert r.json == {"model_version": "echo-spicy"}
    m = EchoModel(project_id="3")
    assert m.extra_params == {"flavour": "spicy"} and m.label_config == CONFIG
    assert m.parsed_label_config["label"]["type"] == "RectangleLabels"
    # Label Studio also sends extra params as a JSON string
    c.post("/setup", json={"project": "4.1", "schema": CONFIG, "extra_params": json.dumps({"flavour": "mild"})})
    assert EchoModel(project_id="4").extra_params == {"flavour": "mild"}


def test_webhook():
    c = init_app(EchoModel).test_client()
    r = c.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert r.status_code == 200 and r.json["status"] == "Unknown event"
    r = c.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1, "label_config": CONFIG}})
    assert r.status_code == 201 and r.json == {"result": {"event": "START_TRAINING", "n": 1}, "status": "ok"}
    # Label Studio 1.23's bulk events (a deletion only ever sends the plural form)
    r = c.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 4}, {"id": 5}],
                                 "project": {"id": 1, "label_config": CONFIG}})
    assert r.status_code == 201 and r.json["result"] == {"event": "ANNOTATIONS_DELETED", "n": 2}
    r = c.post("/webhook", json={"action": "ANNOTATIONS_CREATED", "annotation": [{"id": 6}], "task": [{"id": 1}],
                                 "project": {"id": 1}})
    assert r.status_code == 201 and r.json["result"] == {"event": "ANNOTATIONS_CREATED", "n": 3}
    for event in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "ANNOTATIONS_CREATED",
                  "ANNOTATIONS_DELETED", "START_TRAINING"):
        assert event in LabelStudioMLBase.TRAIN_EVENTS


def test_cache_is_per_project_and_shared_between_processes(tmp_path):
    a = LabelStudioMLBase(project_id="1", label_config=CONFIG)
    b = LabelStudioMLBase(project_id="2")
    a.set("k", "one")
    assert a.get("k") == "one" and a.has("k")
    assert b.get("k") is None and not b.has("k")
    # another worker opens the same file and sees the value at once (no stale in-process copy)
    other = SqliteCache(get_cache().path)
    assert other["1", "k"] == "one"
    other["1", "k"] = "two"
    assert a.get("k") == "two"
    del other["1", "k"]
    assert not a.has("k")
    with pytest.raises(ValueError):
        a.set("k", 3)
    assert get_cache().path == tmp_path / "model-dir" / "cache.db"


def test_model_version_is_semver_when_it_can_be():
    m = LabelStudioMLBase(project_id="1", label_config=CONFIG)
    assert isinstance(m.model_version, Version) and str(m.model_version) == "0.0.1"
    assert str(m.model_version.bump_patch()) == "0.0.2"  # upstream model code does this
    assert str(m.bump_model_version()) == "0.1.0" and m.get("model_version") == "0.1.0"
    m.set("model_version", "signs-abc123-openai+owlv2")  # ours are not semver: kept as strings
    assert m.model_version == "signs-abc123-openai+owlv2" and m.bump_model_version() == "signs-abc123-openai+owlv2.1"
    r = init_app(ListModel).test_client().post("/predict", json={"tasks": [{"id": 1}], "project": "5.1"})
    assert r.json["model_version"] == "0.0.1"  # JSON: the string


class SubstringModel(LabelStudioMLBase):
    """Written like upstream's text examples: the task text may be missing, or a file to read."""

    def predict(self, tasks, context=None, **kwargs):
        from_name, to_name, value = self.get_first_tag_occurence("Labels", "Text")
        predictions = []
        for task in tasks:
            text = self.preload_task_data(task, task["data"].get(value))
            if not text:
                continue
            start = text.lower().find("stop")
            if start >= 0:
                predictions.append({"result": [{"from_name": from_name, "to_name": to_name, "type": "labels",
                                                "value": {"start": start, "end": start + 4, "labels": ["Sign"]}}]})
        return predictions


TEXT_CONFIG = ('<View><Text name="text" value="$text"/>'
               '<Labels name="label" toName="text"><Label value="Sign"/></Labels></View>')


def test_preload_task_data_keeps_none_and_missing_values(tmp_path):
    m = SubstringModel(project_id="1", label_config=TEXT_CONFIG)
    data = {"root": {"text": "plain", "null": None, "list": [None, 1, 2.5, False]}, "null": None}
    task = {"id": 1, "data": data}
    assert m.preload_task_data(task) == data  # was RecursionError on the first None
    assert m.preload_task_data(task, None) is None  # a missing key stays missing, not task["data"]
    assert task["data"] == data
    c = init_app(SubstringModel).test_client()
    r = c.post("/predict", json={"tasks": [{"id": 1, "data": {"other": "x"}}], "project": "1.1",
                                 "label_config": TEXT_CONFIG})
    assert r.status_code == 200 and r.json["results"] == []  # was 500: 'dict' object has no attribute 'lower'


def test_preload_task_data_reads_local_files_and_passes_url_by_name(tmp_path, monkeypatch):
    local = tmp_path / "note.txt"
    local.write_text("Big STOP sign")
    m = SubstringModel(project_id="1", label_config=TEXT_CONFIG)
    assert m.preload_task_data({"id": 3, "data": {"text": str(local)}}) == {"text": "Big STOP sign"}
    assert m.preload_task_data({"id": 3}, str(local), read_file=False) == str(local)
    calls = []

    def fake_get_local_path(self, url, **kwargs):
        calls.append((url, kwargs))
        return str(local)

    monkeypatch.setattr(SubstringModel, "get_local_path", fake_get_local_path)
    task = {"id": 4, "data": {"a": "/data/upload/1/x.txt", "b": ["s3://bucket/y.txt"], "c": "just words"}}
    assert m.preload_task_data(task) == {"a": "Big STOP sign", "b": ["Big STOP sign"], "c": "just words"}
    # upstream models override get_local_path(url=..., task_id=...): the keywords must match
    assert calls == [("/data/upload/1/x.txt", {"task_id": 4}), ("s3://bucket/y.txt", {"task_id": 4})]
    c = init_app(SubstringModel).test_client()
    r = c.post("/predict", json={"tasks": [{"id": 5, "data": {"text": str(local)}}], "project": "1.1",
                                 "label_config": TEXT_CONFIG})
    assert r.json["results"][0]["result"][0]["value"]["start"] == 4


def test_build_label_map_semantics():
    m = LabelStudioMLBase(project_id="1", label_config=CONFIG)
    got = m.build_label_map("label", ["stop sign", "OCTAGON", "yield", "Yield sign", "car"])
    assert got == {"stop sign": "Stop Sign", "OCTAGON": "Stop Sign", "yield": "Yield", "Yield sign": "Yield"}
    assert m.get_first_tag_occurence("RectangleLabels", "Image") == ("label", "image", "image")


@pytest.mark.parametrize("path,method,body,status", [
    ("/predict", "post", "not json", 400),
    ("/predict", "post", {"tasks": "nope"}, 400),
    ("/predict", "post", {"tasks": [1, 2]}, 400),
    ("/predict", "post", {"tasks": [], "params": ["login"]}, 400),
    ("/predict", "post", {"tasks": [], "params": {"context": "box"}}, 400),
    ("/predict", "post", {"tasks": [], "label_config": {"xml": 1}}, 400),
    ("/predict", "post", {"tasks": [{"id": 1}], "label_config": "<View><Image"}, 422),
    ("/setup", "post", [1, 2], 400),
    ("/setup", "post", {"project": "1.1", "schema": "not xml"}, 422),
    ("/webhook", "post", {"action": "START_TRAINING", "project": {"id": 1, "label_config": "<View"}}, 422),
    ("/nope", "get", None, 404),
    ("/predict", "get", None, 405),
])
def test_errors_are_json_in_upstream_shape(path, method, body, status):
    c = init_app(EchoModel).test_client()
    kw = {"data": body} if isinstance(body, str) else ({"json": body} if body is not None else {})
    r = getattr(c, method)(path, **kw)
    assert r.status_code == status
    assert r.is_json and r.json["status"] == status and r.json["detail"]
    if status == 422:
        assert "labeling config is not valid" in r.json["detail"] and r.json["result"]["error"] == "LabelConfigError"


def _nested(depth: int) -> str:
    """JSON text of ``depth`` lists, one inside the other."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook"])
def test_deeply_nested_json_is_a_400_in_one_line(path):
    c = init_app(EchoModel).test_client()
    for depth in (50_000, 101):  # past the JSON decoder's own limit; parsed, but past ours
        r = c.post(path, data='{"project": "1.1", "tasks": ' + _nested(depth) + "}", content_type="application/json")
        assert r.status_code == 400, depth
        assert r.json["detail"] == "the request body: lists and objects nested deeper than 100 levels"
    # as deep as Label Studio's own payloads go, and then some: served
    task = {"id": 1, "data": {"image": "x", "meta": json.loads(_nested(90))}}
    r = c.post("/predict", json={"tasks": [task], "project": "1.1", "label_config": CONFIG})
    assert r.status_code == 200 and len(r.json["results"]) == 1


def test_deeply_nested_extra_params_are_refused_and_not_stored():
    c = init_app(EchoModel).test_client()
    c.post("/setup", json={"project": "2.1", "schema": CONFIG, "extra_params": {"flavour": "spicy"}})
    for extra in (_nested(50_000), '{"flavour": ' + _nested(200) + "}"):  # Label Studio sends a JSON string
        r = c.post("/setup", json={"project": "2.1", "schema": CONFIG, "extra_params": extra})
        assert r.status_code == 422
        assert r.json["detail"] == "the extra params: lists and objects nested deeper than 100 levels"
    assert EchoModel(project_id="2").extra_params == {"flavour": "spicy"}


def test_model_exception_is_500_without_traceback(caplog):
    c = init_app(BrokenModel).test_client()
    with caplog.at_level(logging.ERROR):
        r = c.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": CONFIG})
    assert r.status_code == 500 and r.is_json
    assert r.json == {"status": 500, "detail": "KeyError: 'weights/missing.bin'", "result": {"error": "KeyError"}}
    assert "Traceback" not in r.get_data(as_text=True)
    assert "Traceback" in caplog.text  # ... it is in the log


class PickyModel(LabelStudioMLBase):
    """Refuses extra params it cannot use and configs without a RectangleLabels, as a model class should."""

    def setup(self):
        flavour = self.extra_params.get("flavour", "plain")
        if flavour not in ("plain", "spicy"):
            raise ExtraParamsError(f"unknown flavour {flavour!r}")
        self.set("model_version", "picky-" + flavour)

    def predict(self, tasks, context=None, **kwargs):
        try:
            self.get_first_tag_occurence("RectangleLabels", "Image")
        except ValueError:
            raise LabelConfigError("no <RectangleLabels> on an <Image>") from None
        return [{"result": []} for _ in tasks]


def test_client_errors_of_the_model_are_4xx_with_the_reason():
    c = init_app(PickyModel).test_client()
    no_rect = '<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>'
    r = c.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": no_rect})
    assert r.status_code == 422 and r.json["detail"] == "no <RectangleLabels> on an <Image>"


def test_extra_params_are_validated_before_they_are_stored():
    c = init_app(PickyModel).test_client()
    r = c.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": {"flavour": "spicy"}})
    assert r.status_code == 200 and r.json == {"model_version": "picky-spicy"}  # setup() saw the new ones
    for bad in ({"flavour": "sour"}, "{not json", [1, 2], '["a"]'):
        r = c.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": bad})
        assert r.status_code == 422 and r.json["result"]["error"] == "ExtraParamsError", bad
        assert "flavour" in r.json["detail"] or "JSON" in r.json["detail"]
    # nothing bad was stored: the project keeps working with its last good params
    assert PickyModel(project_id="3").extra_params == {"flavour": "spicy"}
    r = c.post("/predict", json={"tasks": [{"id": 1}], "project": "3.1", "label_config": CONFIG})
    assert r.status_code == 200 and r.json["model_version"] == "picky-spicy"
    # Label Studio sends its current extra params on every /setup: emptied there, emptied here
    for empty in (None, "", {}):
        c.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": {"flavour": "spicy"}})
        r = c.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": empty})
        assert r.json == {"model_version": "picky-plain"} and PickyModel(project_id="3").extra_params == {}
    # ... and a /setup without the field leaves them alone
    c.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": '{"flavour": "spicy"}'})
    assert c.post("/setup", json={"project": "3.1", "schema": CONFIG}).json == {"model_version": "picky-spicy"}


def test_upstream_module_level_app_and_a_single_task_dict():
    from backends.base.api import _server
    c = _server.test_client()
    assert c.get("/health").json == {"model_class": "LabelStudioMLBase", "status": "UP"}
    r = c.post("/predict", json={"tasks": {"id": 1}, "label_config": "<View></View>", "project": "1.1",
                                 "params": {"context": {}}})
    assert r.status_code == 200 and r.json["results"] == []
    seen = []

    class One(LabelStudioMLBase):
        def predict(self, tasks, context=None, **kwargs):
            seen.append(tasks)
            return [{"result": []} for _ in tasks]

    r = init_app(One).test_client().post("/predict", json={"tasks": {"id": 7, "data": {}}, "project": "1.1"})
    assert r.status_code == 200 and seen == [[{"id": 7, "data": {}}]] and len(r.json["results"]) == 1


def test_predict_fn_and_update_fn_register_plain_functions(monkeypatch):
    monkeypatch.setattr(base_model, "_predict_fn", None)
    monkeypatch.setattr(base_model, "_update_fn", None)
    calls = []

    @base_model.predict_fn
    def predict(tasks, context, helper, **kwargs):
        calls.append(("predict", helper.project_id, context, kwargs))
        return [{"result": [], "score": 0.5} for _ in tasks]

    @base_model.update_fn
    def update(event, data, helper, **kwargs):
        calls.append(("update", helper.project_id, event))
        return {"updated": True}

    c = init_app(LabelStudioMLBase).test_client()
    r = c.post("/predict", json={"tasks": [{"id": 1}], "project": "4.1", "params": {"login": "x", "context": {"a": 1}}})
    assert r.json["results"] == [{"result": [], "score": 0.5}]
    r = c.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 4}})
    assert r.status_code == 201 and r.json["result"] == {"updated": True}
    assert calls == [("predict", "4", {"a": 1}, {"login": "x"}), ("update", "4", "ANNOTATION_CREATED")]


class GatedModel(LabelStudioMLBase):
    """predict waits for ``gate``; warm_up waits for ``warm``."""
    gate = threading.Event()
    warm = threading.Event()
    started = threading.Semaphore(0)

    def predict(self, tasks, context=None, **kwargs):
        GatedModel.started.release()
        assert GatedModel.gate.wait(30)
        return [{"result": []} for _ in tasks]

    @classmethod
    def warm_up(cls):
        assert cls.warm.wait(30)

    @classmethod
    def metrics(cls):
        return {"index_lag": {"7": 3}}


def test_predict_beyond_the_limit_is_503_and_health_stays_free(monkeypatch):
    monkeypatch.delenv("PREDICT_MAX_REQUESTS", raising=False)
    GatedModel.gate.clear()
    app = init_app(GatedModel)
    on_worker_start(app, threads=4, warm_up=False)  # 4 threads: 2 for /predict, 2 kept free
    assert worker_of(app).predict_limit == 2
    body = {"tasks": [{"id": 1}], "project": "1.1"}
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(app.test_client().post("/predict", json=body)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for _ in threads:
        assert GatedModel.started.acquire(timeout=30)
    c = app.test_client()
    try:
        r = c.post("/predict", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.json["status"] == 503 and "busy" in r.json["detail"] and r.json["result"] == {"retry_after": 5}
        assert c.get("/health").json["status"] == "UP"
        metrics = c.get("/metrics").json
        assert metrics["worker"]["predict"] == {"in_flight": 2, "limit": 2, "served": 0, "refused_busy": 1,
                                                "slots": 4, "slots_busy": 2, "slots_waiting": 0, "slot_wait": 5.0}
        assert metrics["index_lag"] == {"7": 3}  # the model class's own entries
        assert c.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200
    finally:
        GatedModel.gate.set()
        for t in threads:
            t.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert c.post("/predict", json=body).status_code == 200  # slots are given back
    monkeypatch.setenv("PREDICT_MAX_REQUESTS", "7")
    on_worker_start(app, threads=4, warm_up=False)
    assert worker_of(app).predict_limit == 7


class SlotModel(LabelStudioMLBase):
    """An upstream-style model (the app holds its slot for the whole predict): records each task id as
    its predict starts, then holds on until ``done`` is released once for it."""
    started: list = []
    done = threading.Semaphore(0)

    def predict(self, tasks, context=None, **kwargs):
        SlotModel.started.append(tasks[0]["id"])
        assert SlotModel.done.acquire(timeout=30)
        return [{"result": []} for _ in tasks]


def _until(check, timeout=10.0):
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_predict_waits_its_turn_for_a_model_slot_then_is_503(monkeypatch):
    monkeypatch.setenv("PREDICT_CONCURRENCY", "2")
    monkeypatch.setenv("PREDICT_SLOT_WAIT", "10")
    SlotModel.started, SlotModel.done = [], threading.Semaphore(0)
    app = init_app(SlotModel)
    on_worker_start(app, threads=16, warm_up=False)  # 14 /predict may be in progress: threads are not the bound here
    c = app.test_client()
    answers, senders = {}, []

    def send(i):
        answers[i] = app.test_client().post("/predict", json={"tasks": [{"id": i}], "project": "1.1"})

    def slots():
        return c.get("/metrics").json["worker"]["predict"]

    try:
        for i in (1, 2, 3, 4, 5):
            senders.append(threading.Thread(target=send, args=(i,)))
            senders[-1].start()
            _until(lambda i=i: len(SlotModel.started) + slots()["slots_waiting"] == i)  # one at a time, in order
        assert SlotModel.started == [1, 2] and not answers  # 3, 4 and 5 wait in line instead of a 503
        assert slots()["in_flight"] == 5 and slots()["slots_busy"] == 2
        assert c.get("/health").json["status"] == "UP"
        assert c.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200
        # a slot that comes free goes to the longest waiter
        SlotModel.done.release()
        _until(lambda: len(SlotModel.started) == 3)
        SlotModel.done.release()
        _until(lambda: len(SlotModel.started) == 4)
        assert SlotModel.started[2:] == [3, 4]
        # a request that gets no slot within PREDICT_SLOT_WAIT is turned away, with a hint when to come back
        monkeypatch.setenv("PREDICT_SLOT_WAIT", "0.5")
        t0 = time.monotonic()
        r = c.post("/predict", json={"tasks": [{"id": 6}], "project": "1.1"})
        assert time.monotonic() - t0 >= 0.5
        assert r.status_code == 503 and r.headers["Retry-After"] == "5" and r.json["result"] == {"retry_after": 5}
        assert r.json["detail"] == ("this backend worker is busy: no model slot came free within 0.5 s "
                                    "(PREDICT_SLOT_WAIT; 2 slots, 1 more waiting); retry after 5 s")
    finally:
        for _ in range(5):
            SlotModel.done.release()
        for t in senders:
            t.join(30)
    assert 6 not in SlotModel.started and sorted(SlotModel.started) == [1, 2, 3, 4, 5]
    assert {i: a.status_code for i, a in answers.items()} == {i: 200 for i in (1, 2, 3, 4, 5)}
    assert slots() == {"in_flight": 0, "limit": 14, "served": 6, "refused_busy": 1, "slots": 2, "slots_busy": 0,
                       "slots_waiting": 0, "slot_wait": 0.5}


def test_model_slots_go_to_admitted_requests_first_then_first_come_first_served():
    from backends.base.worker import ModelSlots, Worker
    slots, worker, order = ModelSlots(1), Worker(), []

    def wait_for_slot(name):
        with slots.hold(timeout=10):
            order.append(name)

    def new_request(name):
        with worker.admit():
            wait_for_slot(name)

    with worker.admit():
        with slots.hold():  # this request is admitted and holds the only slot
            waiters = []
            for name in ("new-1", "new-2"):  # two other requests queue up, in this order
                waiters.append(threading.Thread(target=new_request, args=(name,)))
                waiters[-1].start()
                _until(lambda n=len(waiters): slots.waiting == n)
            # ... then a second task of the admitted request
            waiters.append(threading.Thread(target=contextvars.copy_context().run, args=(wait_for_slot, "admitted")))
            waiters[-1].start()
            _until(lambda: slots.waiting == 3)
        for t in waiters:
            t.join(10)
    assert order == ["admitted", "new-1", "new-2"]


def test_health_says_loading_while_the_worker_warms_up():
    GatedModel.warm.clear()
    app = init_app(GatedModel)
    c = app.test_client()
    on_worker_start(app, threads=8)
    try:
        assert c.get("/health").json == {"status": "loading", "model_class": "GatedModel"}
        assert c.get("/metrics").json["worker"]["loading"] is True
        assert c.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200
    finally:
        GatedModel.warm.set()
    worker_of(app)._warm_up.join(30)
    assert c.get("/health").json == {"status": "UP", "model_class": "GatedModel"}
    assert c.get("/metrics").json["worker"]["warm_up_seconds"] is not None


@pytest.mark.parametrize("auth,status", [(None, 401), (("u", "wrong"), 401), (("x", "p@ss"), 401),
                                         (("u", "p@ss"), 200)])
def test_basic_auth_on(monkeypatch, auth, status):
    monkeypatch.setenv("BASIC_AUTH_USER", "u")
    monkeypatch.setenv("BASIC_AUTH_PASS", "p@ss")
    c = init_app(EchoModel).test_client()
    for path in ("/health", "/metrics"):
        r = c.get(path, auth=auth)
        assert r.status_code == status
        if status == 401:
            assert r.is_json and "basic auth" in r.json["detail"] and r.json["status"] == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = c.post("/predict", json={"tasks": [], "project": "1.1", "label_config": CONFIG}, auth=auth)
    assert r.status_code == status


def test_basic_auth_off_by_default():
    c = init_app(EchoModel).test_client()
    assert c.get("/health").status_code == 200
    assert init_app(EchoModel, basic_auth_user="only-user").test_client().get("/health").status_code == 200


def test_tokens_never_logged(caplog, monkeypatch):
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", secret)
    c = init_app(EchoModel).test_client()
    with caplog.at_level(logging.DEBUG):
        c.post("/setup", json={"project": "1.1", "schema": CONFIG, "access_token": secret})
        c.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": CONFIG})
    assert secret not in caplog.text


def test_legacy_and_jwt_token_headers(monkeypatch):
    from pipeline.labelstudio import client as credentials
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls.example:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "abc123legacy")
    assert credentials.label_studio_url() == "http://ls.example:8080"
    assert credentials.access_token() == "abc123legacy"  # legacy: used as is, no network
    assert credentials.auth_header("abc123legacy") == {"Authorization": "Token abc123legacy"}
    assert credentials.auth_header("eyJh.eyJ.sig")["Authorization"].startswith("Bearer ")


def test_label_studio_client_is_shared_and_a_failure_falls_back_to_the_key(monkeypatch):
    built = []

    class FakeClient:
        def __init__(self, base_url, api_key):
            built.append((base_url, api_key))
            if api_key == "expired":
                raise RuntimeError("API key has expired")
            self._client_wrapper = type("W", (), {"_tokens_client": type("T", (), {"api_key": "access-1"})()})()

    monkeypatch.setattr(base_model, "LabelStudio", FakeClient)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080/ls")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "eyJ-refresh")
    a, b = LabelStudioMLBase(project_id="1"), LabelStudioMLBase(project_id="2")
    assert a._get_label_studio_client() is a._get_label_studio_client() is b._get_label_studio_client()
    assert a.get_label_studio_access_token() == "access-1"
    # the key is passed (the SDK reads LABEL_STUDIO_API_KEY only when imported); the slash keeps a sub-path
    assert built == [("http://127.0.0.1:8080/ls/", "eyJ-refresh")]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "expired")
    c = LabelStudioMLBase(project_id="3")
    assert c.get_label_studio_access_token() == c.get_label_studio_access_token() == "expired"
    assert built[1:] == [("http://127.0.0.1:8080/ls/", "expired")]  # tried once per model object
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    assert LabelStudioMLBase(project_id="4").get_label_studio_access_token() == "" and len(built) == 2


def test_label_studio_client_from_the_url_alone_as_upstream(monkeypatch):
    """No key in the environment: as upstream's base, the SDK client is built from LABEL_STUDIO_URL alone (the
    real SDK then uses the key it read when imported, or refuses) and kept; a model.py written for upstream
    that asks for it gets it."""
    built = []

    class FakeClient:
        def __init__(self, base_url, api_key=None):
            built.append((base_url, api_key))

    monkeypatch.setattr(base_model, "LabelStudio", FakeClient)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080")
    for var in ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN", "LABEL_STUDIO_HOST"):
        monkeypatch.delenv(var, raising=False)
    m = LabelStudioMLBase(project_id="1")
    first = m._get_label_studio_client()
    assert isinstance(first, FakeClient) and m._get_label_studio_client() is first
    assert LabelStudioMLBase(project_id="2")._get_label_studio_client() is first  # one per process
    assert built == [("http://127.0.0.1:8080/", None)]
    monkeypatch.delenv("LABEL_STUDIO_URL")
    assert LabelStudioMLBase(project_id="3")._get_label_studio_client() is False  # no URL: none, as before


def test_init_app_refuses_other_classes():
    with pytest.raises(ValueError):
        init_app(dict)
