"""AutoLabelModel behind the Flask app, with providers that give known answers and a local file server
standing in for Label Studio (so image fetching, the token header and the host allow-list are real)."""
from __future__ import annotations

import logging
import time

import pytest
import yaml

from backends.autolabel import runner
from backends.autolabel.model import AutoLabelModel
from backends.base import init_app
from backends.images import HostPolicy, ImageRefused, fetch_image
from pipeline.config import parse_project
from pipeline.labelconfig import labeling_config
from pipeline.pipeline import Pipeline
from tests.backend_helpers import FileServer, KnownGrounder, KnownVLM, jpeg_bytes

TOKEN = "feedc0ffee0123456789abcdef0123456789abcd"
PROJECT = {
    "project_name": "signs", "target_object": "stop sign", "label": "Stop Sign",
    "falcon_queries": {"Stop Sign": ["stop sign"], "Yield": ["yield sign"], "Speed": ["speed limit sign"]},
    "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5},
}
BOXES = {"stop sign": [(0.1, 0.2, 0.5, 0.6, 0.9)], "yield sign": [(0.6, 0.1, 0.9, 0.4, 0.7)],
         "speed limit sign": [(0.0, 0.0, 0.2, 0.2, 0.6)], "red thing": [(0.25, 0.25, 0.75, 0.75, 0.8)]}


@pytest.fixture
def ls_files():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def backend(tmp_path, monkeypatch, ls_files):
    """Returns make(project=..., vlm=..., grounder=...) -> (test client, label config, vlm, grounder)."""
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "model-dir"))
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_files.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    monkeypatch.setenv("PROJECTS_DIR", str(tmp_path / "projects"))
    for k in ("ALLOWED_IMAGE_HOSTS", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "PREDICT_CONCURRENCY"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "projects").mkdir()
    runner.clear()

    def make(project=None, vlm=None, grounder=None, label_config=None):
        data = project or PROJECT
        path = tmp_path / "projects" / f"{data['project_name']}.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("PROJECT_CONFIG", str(path))
        vlm = vlm or KnownVLM(0.9)
        grounder = grounder or KnownGrounder(BOXES)
        monkeypatch.setattr(runner, "PIPELINE_FACTORY", lambda cfg: Pipeline(cfg, vlm=vlm, grounder=grounder))
        runner.clear()
        config = label_config or labeling_config(parse_project(data))
        return init_app(AutoLabelModel).test_client(), config, vlm, grounder

    yield make
    runner.clear()


def _predict(client, config, tasks, context=None):
    r = client.post("/predict", json={"tasks": tasks, "project": "5.1700000000", "label_config": config,
                                      "params": {"context": context}})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def test_predict_boxes_labels_scores_and_token(backend, ls_files):
    client, config, vlm, _ = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 50))
    body = _predict(client, config, [{"id": 11, "data": {"image": "/data/upload/5/a.jpg"}}])
    (pred,) = body["results"]
    assert pred["model_version"] == body["model_version"]
    assert body["model_version"].startswith("signs-") and body["model_version"].endswith("-openai+falcon")
    by_label = {r["value"]["rectanglelabels"][0]: r for r in pred["result"]}
    assert set(by_label) == {"Stop Sign", "Yield", "Speed"}
    stop = by_label["Stop Sign"]
    assert (stop["from_name"], stop["to_name"], stop["type"]) == ("label", "image", "rectanglelabels")
    assert (stop["original_width"], stop["original_height"]) == (100, 50)
    assert stop["value"]["x"] == pytest.approx(10) and stop["value"]["y"] == pytest.approx(20)
    assert stop["value"]["width"] == pytest.approx(40) and stop["value"]["height"] == pytest.approx(40)
    assert stop["score"] == pytest.approx(0.9)  # verify's P(yes)
    assert pred["score"] == pytest.approx(0.9)
    # fetched from "Label Studio" with the legacy token
    assert ls_files.requests and all(r["authorization"] == f"Token {TOKEN}" for r in ls_files.requests)


def test_label_mapping_aliases_case_and_unmappable(backend, ls_files, caplog):
    config = """<View>
  <Image name="img" value="$photo"/>
  <RectangleLabels name="boxes" toName="img">
    <Label value="STOP SIGN"/>
    <Label value="Give Way" predicted_values="Yield"/>
  </RectangleLabels>
</View>"""
    client, _, _, _ = backend(label_config=config)
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    with caplog.at_level(logging.INFO):
        body = _predict(client, config, [{"id": 12, "data": {"photo": "/data/upload/5/a.jpg"}}])
    results = body["results"][0]["result"]
    assert sorted(r["value"]["rectanglelabels"][0] for r in results) == ["Give Way", "STOP SIGN"]
    assert {(r["from_name"], r["to_name"]) for r in results} == {("boxes", "img")}
    assert "task 12: dropped 1 box(es) labelled 'Speed'" in caplog.text


def test_percent_coordinates_follow_exif_orientation(backend, ls_files):
    # stored 80x40 landscape with EXIF "rotate 90": people (and Label Studio) see 40x80 portrait
    ls_files.files["/data/upload/5/rot.jpg"] = jpeg_bytes((80, 40), exif_orientation=6)
    client, config, _, grounder = backend(grounder=KnownGrounder({"stop sign": [(0.25, 0.5, 0.75, 1.0, 0.9)]}))
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/rot.jpg"}}])
    (region,) = body["results"][0]["result"]
    assert grounder.sizes[0] == (40, 80)  # the grounder saw the upright image
    assert (region["original_width"], region["original_height"]) == (40, 80)
    v = region["value"]
    assert (v["x"], v["y"], v["width"], v["height"]) == pytest.approx((25, 50, 50, 50))


def test_one_bad_task_does_not_sink_the_batch(backend, ls_files, caplog):
    client, config, _, _ = backend()
    ls_files.files["/data/upload/5/ok.jpg"] = jpeg_bytes()
    ls_files.files["/data/upload/5/corrupt.jpg"] = b"\xff\xd8\xff\xe0 definitely not a jpeg"
    tasks = [{"id": 1, "data": {"image": "/data/upload/5/ok.jpg"}},
             {"id": 2, "data": {"image": "/data/upload/5/missing.jpg"}},
             {"id": 3, "data": {"image": "/data/upload/5/corrupt.jpg"}},
             {"id": 4, "data": {}},
             {"id": 5, "data": {"image": "/data/upload/5/ok.jpg"}}]
    with caplog.at_level(logging.WARNING):
        body = _predict(client, config, tasks)
    res = body["results"]
    assert len(res) == 5
    assert res[0]["result"] and res[4]["result"]
    assert res[1] == [] and res[2] == [] and res[3] == []  # no prediction: Label Studio stores none
    reasons = {e["task"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {2, 3, 4}
    assert "missing.jpg" in reasons[2] and "HTTP 404" in reasons[2]
    assert "corrupt" in reasons[3]
    assert "no image URL" in reasons[4]
    for task_id in (2, 3, 4):
        assert f"task {task_id}: no prediction" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in str(body)


def test_model_errors_are_isolated_too(backend, ls_files):
    class FlakyGrounder(KnownGrounder):
        def boxes(self, image, queries):
            if image.size == (33, 33):
                raise RuntimeError("CUDA out of memory (pretend)")
            return super().boxes(image, queries)

    client, config, _, _ = backend(grounder=FlakyGrounder(BOXES))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((33, 33))
    ls_files.files["/data/upload/5/b.jpg"] = jpeg_bytes((64, 48))
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}},
                                     {"id": 2, "data": {"image": "/data/upload/5/b.jpg"}}])
    assert body["results"][0] == [] and body["results"][1]["result"]
    assert body["errors"] == [{"task": 1, "reason": "RuntimeError: CUDA out of memory (pretend)"}]


def test_filtered_out_image_is_an_empty_prediction_not_an_error(backend, ls_files):
    client, config, vlm, grounder = backend(vlm=KnownVLM(0.1))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}])
    assert body["results"] == [{"model_version": body["model_version"], "score": 0.0, "result": []}]
    assert "errors" not in body and grounder.calls == []


def test_concurrency_is_limited(backend, ls_files, monkeypatch):
    monkeypatch.setenv("PREDICT_CONCURRENCY", "2")
    project = {**PROJECT, "stages": {"filter": True, "ground": False, "verify": False}}
    client, config, vlm, _ = backend(project=project, vlm=KnownVLM(0.9, delay=0.15))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    tasks = [{"id": i, "data": {"image": "/data/upload/5/a.jpg"}} for i in range(6)]
    t0 = time.perf_counter()
    body = _predict(client, config, tasks)
    took = time.perf_counter() - t0
    assert len(body["results"]) == 6 and "errors" not in body
    assert vlm.max_active == 2  # in parallel, but never more than the limit
    assert took >= 3 * 0.15


def test_allow_list_refuses_other_hosts(backend, ls_files, monkeypatch):
    other = FileServer()
    try:
        other.files["/cat.jpg"] = jpeg_bytes()
        # a redirect from an allowed host to a host that is not allowed
        ls_files_alias = f"http://localhost:{ls_files.httpd.server_address[1]}"
        other.files["/hop.jpg"] = (302, {"Location": ls_files_alias + "/private.jpg"}, b"")
        client, config, _, _ = backend()
        tasks = [{"id": 1, "data": {"image": other.url + "/cat.jpg"}},
                 {"id": 2, "data": {"image": "file:///etc/passwd"}},
                 {"id": 3, "data": {"image": "http://169.254.169.254/latest/meta-data/"}}]
        body = _predict(client, config, tasks)
        assert body["results"] == [[], [], []]
        assert all("refusing" in e["reason"] or "unsupported" in e["reason"] for e in body["errors"])
        assert other.requests == []  # refused before any request

        monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", f"cdn.example.com, 127.0.0.1:{other.httpd.server_address[1]}")
        body = _predict(client, config, [{"id": 4, "data": {"image": other.url + "/cat.jpg"}},
                                         {"id": 5, "data": {"image": other.url + "/hop.jpg"}}])
        assert body["results"][0]["result"] and body["results"][1] == []
        assert "localhost" in body["errors"][0]["reason"] and "refusing" in body["errors"][0]["reason"]
        assert other.hits("/cat.jpg")[0]["authorization"] is None  # the token only goes to Label Studio
        assert ls_files.hits("/private.jpg") == []
    finally:
        other.close()


def test_host_policy_entries():
    p = HostPolicy("http://ls.internal:8080", ["cdn.example.com", ".images.example.org", "https://x.example:8443"])
    assert p.allows("http://ls.internal:8080/data/upload/1/a.jpg")
    assert not p.allows("http://ls.internal:9999/a.jpg")
    assert p.allows("https://cdn.example.com/a.jpg") and p.allows("http://cdn.example.com:81/a.jpg")
    assert p.allows("https://a.images.example.org/x.jpg") and p.allows("https://images.example.org/x.jpg")
    assert not p.allows("https://evilimages.example.org/x.jpg")
    assert p.allows("https://x.example:8443/a") and not p.allows("https://x.example/a")
    assert not p.allows("ftp://cdn.example.com/a.jpg")
    with pytest.raises(ImageRefused):
        fetch_image("gopher://cdn.example.com/a", policy=p)


def test_interactive_text_prompt_grounds_the_text(backend, ls_files):
    client, config, vlm, grounder = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 100))
    ctx = {"result": [{"from_name": "prompt", "to_name": "image", "type": "textarea",
                       "value": {"text": ["red thing"]}}]}
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    assert grounder.calls == [["red thing"]]
    assert not any(q.startswith("Does this image") for q in vlm.questions)  # filter skipped
    (region,) = body["results"][0]["result"]
    assert region["value"]["rectanglelabels"] == ["Stop Sign"]  # the project's target label
    assert region["value"]["x"] == pytest.approx(25)

    # a prompt that names a label's alias gets that label
    ctx["result"][0]["value"]["text"] = ["yield sign"]
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    assert [r["value"]["rectanglelabels"] for r in body["results"][0]["result"]] == [["Yield"]]


def test_interactive_user_box_gets_its_verify_score(backend, ls_files):
    client, config, vlm, grounder = backend(vlm=KnownVLM(0.3))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((200, 100))
    drawn = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0, "rectanglelabels": ["Yield"]}
    ctx = {"result": [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": drawn,
                       "original_width": 200, "original_height": 100}]}
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    (region,) = body["results"][0]["result"]  # kept although P(yes)=0.3 < verify threshold: they drew it
    assert region["score"] == pytest.approx(0.3)
    assert region["value"]["rectanglelabels"] == ["Yield"]
    assert (region["value"]["x"], region["value"]["width"]) == pytest.approx((10, 30))
    assert grounder.calls == [] and vlm.questions == ["Is this a Yield? Answer YES or NO."]


def test_project_from_extra_params_and_model_version(backend, tmp_path, ls_files):
    client, config, _, _ = backend()
    other = {**PROJECT, "project_name": "drones", "target_object": "drone", "label": "Stop Sign"}
    (tmp_path / "projects" / "drones.yaml").write_text(yaml.safe_dump(other))
    v_env = client.post("/setup", json={"project": "8.1", "schema": config}).json["model_version"]
    v_extra = client.post("/setup", json={"project": "9.1", "schema": config,
                                          "extra_params": {"project": "drones"}}).json["model_version"]
    assert v_env.startswith("signs-") and v_extra.startswith("drones-")
    r = client.post("/setup", json={"project": "10.1", "schema": config,
                                    "extra_params": {"project": "../model-dir/cache.db"}})
    assert r.status_code == 500 and "inside PROJECTS_DIR" in r.json["reason"]
    # the version follows the YAML
    (tmp_path / "projects" / "drones.yaml").write_text(yaml.safe_dump({**other, "thresholds": {"verify": 0.9}}))
    time.sleep(0.01)
    v_new = client.post("/setup", json={"project": "9.1", "schema": config}).json["model_version"]
    assert v_new.startswith("drones-") and v_new != v_extra


def test_misconfiguration_is_reported_as_json(backend, tmp_path, monkeypatch):
    client, config, _, _ = backend()
    monkeypatch.setenv("PROJECT_CONFIG", str(tmp_path / "nope.yaml"))
    r = client.post("/setup", json={"project": "1.1", "schema": config})
    assert r.status_code == 500 and "nope.yaml" in r.json["reason"]
    client, config, _, _ = backend()
    no_rect = '<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>'
    r = client.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": no_rect})
    assert r.status_code == 500 and "RectangleLabels" in r.json["reason"]
