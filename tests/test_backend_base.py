"""The label-studio-ml 2.x contract in backends/base: routes, auth, JSON errors, the per-project cache."""
from __future__ import annotations

import json
import logging

import pytest

from backends.base import LabelStudioMLBase, ModelResponse, credentials, init_app
from backends.base.cache import SqliteCache, get_cache
from pipeline.config import parse_project
from pipeline.labelconfig import labeling_config

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
    for k in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(k, raising=False)


def test_health_metrics_and_predict_contract():
    c = init_app(EchoModel).test_client()
    assert c.get("/health").json == {"status": "UP", "model_class": "EchoModel"}
    assert c.get("/").json["status"] == "UP"
    assert c.get("/metrics").json == {}
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
    assert a.model_version == "0.0.1" and a.bump_model_version() == "0.1.0"


def test_build_label_map_semantics():
    m = LabelStudioMLBase(project_id="1", label_config=CONFIG)
    got = m.build_label_map("label", ["stop sign", "OCTAGON", "yield", "Yield sign", "car"])
    assert got == {"stop sign": "Stop Sign", "OCTAGON": "Stop Sign", "yield": "Yield", "Yield sign": "Yield"}
    assert m.get_first_tag_occurence("RectangleLabels", "Image") == ("label", "image", "image")


@pytest.mark.parametrize("path,method,body,status", [
    ("/predict", "post", "not json", 400),
    ("/predict", "post", {"tasks": "nope"}, 400),
    ("/setup", "post", [1, 2], 400),
    ("/nope", "get", None, 404),
    ("/predict", "get", None, 405),
])
def test_errors_are_json_with_a_reason(path, method, body, status):
    c = init_app(EchoModel).test_client()
    kw = {"data": body} if isinstance(body, str) else ({"json": body} if body is not None else {})
    r = getattr(c, method)(path, **kw)
    assert r.status_code == status
    assert r.is_json and r.json["reason"] and r.json["status"] == "error"


def test_model_exception_is_json_without_traceback(caplog):
    c = init_app(BrokenModel).test_client()
    with caplog.at_level(logging.ERROR):
        r = c.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": CONFIG})
    assert r.status_code == 500 and r.is_json
    assert r.json["reason"] == "KeyError: 'weights/missing.bin'"
    assert "Traceback" not in r.get_data(as_text=True)
    assert "Traceback" in caplog.text  # ... it is in the log


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
            assert r.is_json and "basic auth" in r.json["reason"]
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
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls.example:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "abc123legacy")
    assert credentials.label_studio_url() == "http://ls.example:8080"
    assert credentials.access_token() == "abc123legacy"  # legacy: used as is, no network
    assert credentials.auth_header("abc123legacy") == {"Authorization": "Token abc123legacy"}
    assert credentials.auth_header("eyJh.eyJ.sig")["Authorization"].startswith("Bearer ")


def test_init_app_refuses_other_classes():
    with pytest.raises(ValueError):
        init_app(dict)
