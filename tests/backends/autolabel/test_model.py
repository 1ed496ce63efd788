"""AutoLabelModel behind the Flask app, with providers that give known answers and a local file server
standing in for Label Studio (so image fetching, the token header and the host allow-list are real)."""
from __future__ import annotations

import io
import logging
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image, ImageDraw, ImageFile

from backends.autolabel.model import AutoLabelModel
from backends.base import init_app
from pipeline.cascade import Pipeline
from pipeline.config import parse_project
from pipeline.identify.index import UNKNOWN, Match
from pipeline.images import ImageLoadError
from pipeline.labelstudio import versions as project_version
from pipeline.labelstudio.labeling_config import labeling_config
from pipeline.labelstudio.media import HostPolicy, ImageRefused, fetch_image
from pipeline.predict import runner
from pipeline.providers.base import YesNo
from pipeline.references import service as idservice
from tests.backends.autolabel.signs import BOXES, PROJECT, TOKEN
from tests.doubles import regions as regions_
from tests.doubles.images import jpeg_bytes, png
from tests.doubles.label_studio import page_of
from tests.doubles.providers import KnownGrounder, KnownVLM
from tests.doubles.servers import FileServer, SilentServer, held
from tests.ls_helpers import assert_valid_prediction


def _predict(client, config, tasks, context=None):
    r = client.post("/predict", json={"tasks": tasks, "project": "5.1700000000", "label_config": config,
                                      "params": {"context": context}})
    assert r.status_code == 200, r.get_data(as_text=True)
    li = LabelInterface(config=config)
    for pred in r.json["results"]:  # every prediction passes label-studio-sdk's check against the config
        if pred:
            assert_valid_prediction(li, pred["result"], pred.get("score"))
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
    # the task's certainty (pipeline/certainty.py): filter and every box at P(yes) 0.9 against 0.5 -> 0.4 / 0.5
    assert pred["score"] == pytest.approx(0.8)
    # fetched from "Label Studio" with the legacy token, at the path that works the first time (the SDK's
    # /storage-data/uploaded/ proxy answers 400 on a Label Studio that serves uploads from its own disk)
    assert [r["path"] for r in ls_files.requests] == ["/data/upload/5/a.jpg"]
    assert ls_files.requests[0]["authorization"] == f"Token {TOKEN}"


def test_batch_predictions_move_the_projects_model_version(backend, ls_files):
    """Label Studio stores what /predict answers, then the project's model_version must follow it (Prediction
    score column); interactive suggestions are not stored, and a batch where every task failed changes nothing."""
    client, config, _, _ = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}},
                                     {"id": 2, "data": {"image": "/data/upload/5/gone.jpg"}}])
    assert backend.kept == [("5", body["model_version"])]
    _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}],
             context={"result": [_region("d", 10.0, "manual")]})
    _predict(client, config, [{"id": 2, "data": {"image": "/data/upload/5/gone.jpg"}}])
    assert len(backend.kept) == 1


def test_version_keeper_waits_until_label_studio_has_the_predictions():
    from label_studio_sdk.core.api_error import ApiError

    class Projects:
        def __init__(self):
            self.model_version, self.refusals, self.updates = "label-factory", 2, []

        def get(self, id):
            return SimpleNamespace(id=id, model_version=self.model_version)

        def update(self, id, model_version):
            self.updates.append((id, model_version))
            if self.refusals:  # Label Studio has not stored the predictions yet
                self.refusals -= 1
                raise ApiError(status_code=400, body={"validation_errors": {"model_version": [
                    "Model version doesn't exist either as live model or as static predictions."]}})
            self.model_version = model_version

    projects = Projects()
    keeper = project_version.VersionKeeper(lambda: SimpleNamespace(projects=projects), wait=10, poll=0.05)
    keeper("7", "v1")
    deadline = time.monotonic() + 10
    while projects.model_version != "v1" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert projects.model_version == "v1" and projects.updates == [(7, "v1")] * 3
    keeper("7", "v1")  # already the project's: nothing to update
    time.sleep(0.3)
    assert len(projects.updates) == 3


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


class RedVLM(KnownVLM):
    """P(yes) = the share of red pixels in what it is shown: a verify score says where the crop was cut."""

    def yes_probability(self, image, question):
        super().yes_probability(image, question)
        a = np.asarray(image.convert("RGB")).astype(int)
        return YesNo(float(((a[..., 0] > 150) & (a[..., 1] < 90)).mean()), "logits")


def test_a_big_photo_is_decoded_at_the_working_resolution_with_the_same_predictions(backend, ls_files,
                                                                                    monkeypatch):
    """An 8000x6000 JPEG through /predict (and a rectangle drawn on it) is decoded straight at 1/2 -- the
    decode budget (24 MP by default) -- so no 8000x6000 pixel array ever exists, and the predictions are
    those of a full-resolution decode: the same coordinates and original size, crops cut at the same place."""
    im = Image.new("RGB", (8000, 6000), (128, 128, 128))
    ImageDraw.Draw(im).rectangle((800, 1200, 3999, 3599), fill=(220, 20, 20))  # where the grounder answers
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    ls_files.files["/data/upload/5/big.jpg"] = buf.getvalue()
    del im
    decoded, handed = [], []  # every image Pillow decoded; what the pipeline was handed
    load = ImageFile.ImageFile.load

    def spy(self):  # a load with tiles left to read decodes them, at self.size (after any draft)
        todo = bool(self.tile)
        out = load(self)
        if todo:
            decoded.append(self.size)
        return out
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    photo = Pipeline.photo
    monkeypatch.setattr(Pipeline, "photo", lambda self, image: handed.append(image) or photo(self, image))
    drawn = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 8000,
             "original_height": 6000, "value": {"x": 10, "y": 20, "width": 40, "height": 40, "rotation": 0,
                                                "rectanglelabels": ["Stop Sign"]}}
    task = [{"id": 1, "data": {"image": "/data/upload/5/big.jpg"}}]
    answers = {}
    for decode in (24_000_000, None):  # the default, then full resolution
        project = {**PROJECT, "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0},
                   "budgets": {"decode_pixels": decode}}
        client, config, vlm, grounder = backend(project=project, vlm=RedVLM(),
                                                grounder=KnownGrounder({"stop sign": [(0.1, 0.2, 0.5, 0.6, 0.9)]}))
        decoded.clear(), handed.clear()
        auto = _predict(client, config, task)["results"][0]
        interactive = _predict(client, config, task, context={"result": [drawn]})["results"][0]
        answers[decode] = auto, interactive, grounder.sizes
        if decode:
            assert decoded == [(4000, 3000)] * 2, decoded  # never the full 8000x6000
            assert all(p.pixels.size == (4000, 3000) and p.size == (8000, 6000) for p in handed), handed
        else:
            assert decoded == [(8000, 6000)] * 2  # the spy sees a full decode when there is one
    (auto, interactive, views), (full_auto, full_interactive, full_views) = answers[24_000_000], answers[None]
    assert views == full_views  # the grounder got the same view size

    def where(pred):
        return [(r["original_width"], r["original_height"], r["value"]["x"], r["value"]["y"], r["value"]["width"],
                 r["value"]["height"], r["value"]["rectanglelabels"]) for r in pred["result"]]
    assert where(auto) == where(full_auto) and where(interactive) == where(full_interactive)
    assert where(auto)[0] == (8000, 6000, pytest.approx(10), pytest.approx(20), pytest.approx(40),
                              pytest.approx(40), ["Stop Sign"])
    for pred, full in ((auto, full_auto), (interactive, full_interactive)):
        scores = [r["score"] for r in pred["result"]]
        assert scores == pytest.approx([r["score"] for r in full["result"]], abs=0.01)
    assert interactive["result"][0]["score"] > 0.5  # the drawn crop (15 % padding) is mostly the red box


def test_the_predict_jobs_fetch_at_the_projects_working_resolution(ls_files):
    """``label-factory predict`` (one process or Ray actors) fetches through ``runner.fetcher``: bound to its
    Label Studio and token, decoding at the YAML's decode budget; a broken image still names its URL."""
    ls_files.files["/data/upload/5/big.jpg"] = jpeg_bytes((4000, 3000))
    ls_files.files["/data/upload/5/broken.jpg"] = b"not an image"
    fetch = runner.fetcher(parse_project({**PROJECT, "budgets": {"decode_pixels": 3_000_000}}), ls_files.url, TOKEN)
    photo = fetch("/data/upload/5/big.jpg", 3)
    assert (photo.size, photo.pixels.size, photo.scale) == ((4000, 3000), (2000, 1500), 2)
    assert ls_files.requests[0]["authorization"] == f"Token {TOKEN}"
    with pytest.raises(ImageLoadError, match=r"^/data/upload/5/broken.jpg: not an image"):
        fetch("/data/upload/5/broken.jpg", 4)


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


def test_a_too_thin_image_fails_its_task_only_with_the_reason(backend, ls_files, caplog):
    """A 4000x27 strip (148:1, beyond budgets.max_aspect_ratio) is refused before any model, the reason in the
    response and the log; the ordinary photo in the same request is answered."""
    client, config, vlm, grounder = backend()
    ls_files.files["/data/upload/5/strip.jpg"] = jpeg_bytes((4000, 27))
    ls_files.files["/data/upload/5/ok.jpg"] = jpeg_bytes((64, 48))
    with caplog.at_level(logging.WARNING):
        body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/strip.jpg"}},
                                         {"id": 2, "data": {"image": "/data/upload/5/ok.jpg"}}])
    assert body["results"][0] == [] and body["results"][1]["result"]
    (error,) = body["errors"]
    assert error["task"] == 1 and error["reason"].startswith(
        "ImageShapeError: 4000x27 image: aspect ratio 148:1 is beyond budgets.max_aspect_ratio (20:1)")
    assert "task 1: no prediction: ImageShapeError" in caplog.text
    assert grounder.sizes == [(64, 48)] and len(vlm.questions) == 1 + 3  # the photo's filter and its 3 boxes


def test_filtered_out_image_is_an_empty_prediction_not_an_error(backend, ls_files):
    client, config, vlm, grounder = backend(vlm=KnownVLM(0.1))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}])
    # certain, not 0: the filter said no at P(yes) 0.1 against 0.5 -> (0.5 - 0.1) / 0.5
    assert body["results"] == [{"model_version": body["model_version"], "score": pytest.approx(0.8), "result": []}]
    assert "errors" not in body and grounder.calls == []


def test_concurrency_is_limited(backend, ls_files, monkeypatch):
    monkeypatch.setenv("PREDICT_CONCURRENCY", "2")
    project = {**PROJECT, "stages": {"filter": True, "ground": False, "verify": False}}
    client, config, vlm, _ = backend(project=project, vlm=KnownVLM(0.9, delay=0.15))
    for i in range(6):  # six different images: the answer cache must not answer any of them
        ls_files.files[f"/data/upload/5/{i}.jpg"] = jpeg_bytes(color=(200, 30, 30 + 20 * i))
    tasks = [{"id": i, "data": {"image": f"/data/upload/5/{i}.jpg"}} for i in range(6)]
    t0 = time.perf_counter()
    body = _predict(client, config, tasks)
    took = time.perf_counter() - t0
    assert len(body["results"]) == 6 and "errors" not in body
    assert vlm.max_active == 2  # in parallel, but never more than the limit
    assert took >= 3 * 0.15


def test_a_slow_image_holds_no_model_slot(backend, ls_files, monkeypatch):
    """PREDICT_CONCURRENCY=1: while one request waits for its image, another request's task gets the model."""
    monkeypatch.setenv("PREDICT_CONCURRENCY", "1")
    client, config, vlm, _ = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    image, asked, release = jpeg_bytes(color=(30, 200, 30)), threading.Event(), threading.Event()  # not a.jpg

    ls_files.files["/data/upload/5/slow.jpg"] = held(image, lambda: (asked.set(), release.wait(60)))
    bodies = {}

    def run(name, url):  # a test client per thread, like two Label Studio requests
        bodies[name] = _predict(init_app(AutoLabelModel).test_client(), config, [{"id": 1, "data": {"image": url}}])

    slow_req = threading.Thread(target=run, args=("slow", "/data/upload/5/slow.jpg"))
    slow_req.start()
    try:
        assert asked.wait(10)
        fast_req = threading.Thread(target=run, args=("fast", "/data/upload/5/a.jpg"))
        fast_req.start()
        fast_req.join(20)
        assert not fast_req.is_alive(), "the ordinary task waited for the model slot held by a download"
        assert not release.is_set() and bodies["fast"]["results"][0]["result"]
        asked_for_one = len(vlm.questions)  # the ordinary task's questions only: the slow one is still downloading
    finally:
        release.set()
        slow_req.join(30)
    assert bodies["slow"]["results"][0]["result"] and len(vlm.questions) == 2 * asked_for_one


def test_requests_waiting_for_their_images_turn_no_other_predict_away(backend, ls_files, monkeypatch):
    """Six requests whose images drip in (the old in-flight limit of the default THREADS): an ordinary
    /predict is still served at once, by the default gunicorn settings."""
    import importlib

    from backends import gunicorn_conf
    from backends.base.api import on_worker_start
    for k in ("THREADS", "PREDICT_MAX_REQUESTS", "PREDICT_SLOT_WAIT"):
        monkeypatch.delenv(k, raising=False)
    threads = importlib.reload(gunicorn_conf).threads
    backend()  # the project, its providers and the environment
    app = init_app(AutoLabelModel)
    on_worker_start(app, threads=threads, warm_up=False)
    config = labeling_config(parse_project(PROJECT))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    asked, release = threading.Semaphore(0), threading.Event()
    ls_files.files["/data/upload/5/slow.jpg"] = held(jpeg_bytes(color=(30, 200, 30)),
                                                     lambda: (asked.release(), release.wait(60)))
    answers = []

    def run(url):
        answers.append(app.test_client().post("/predict", json={"tasks": [{"id": 1, "data": {"image": url}}],
                                                                "project": "5.1", "label_config": config}))

    dripping = [threading.Thread(target=run, args=("/data/upload/5/slow.jpg",)) for _ in range(6)]
    for t in dripping:
        t.start()
    try:
        for _ in dripping:
            assert asked.acquire(timeout=10)
        t0 = time.monotonic()
        r = app.test_client().post("/predict", json={"tasks": [{"id": 2, "data": {"image": "/data/upload/5/a.jpg"}}],
                                                     "project": "5.1", "label_config": config})
        assert r.status_code == 200, r.json
        assert r.json["results"][0]["result"] and time.monotonic() - t0 < 5
    finally:
        release.set()
        for t in dripping:
            t.join(30)
    assert [a.status_code for a in answers] == [200] * 6


class GateVLM(KnownVLM):
    """Answers once ``gate`` is set; ``asked`` counts the questions that began."""

    def __init__(self):
        super().__init__(0.9)
        self.gate, self.asked = threading.Event(), threading.Semaphore(0)

    def yes_probability(self, image, question):
        self.asked.release()
        assert self.gate.wait(60)
        return super().yes_probability(image, question)


def test_a_predict_with_no_model_slot_within_the_slot_wait_is_503_and_the_deadline_still_counts(
        backend, ls_files, monkeypatch):
    monkeypatch.setenv("PREDICT_CONCURRENCY", "1")
    vlm = GateVLM()
    client, config, _, _ = backend(project={**PROJECT, "stages": {"filter": True, "ground": False, "verify": False}},
                                   vlm=vlm)
    for name in ("a", "b", "c"):
        ls_files.files[f"/data/upload/5/{name}.jpg"] = jpeg_bytes(color=(10, 20, ord(name)))
    first = {}
    holder = threading.Thread(target=lambda: first.update(r=_predict(init_app(AutoLabelModel).test_client(), config, [
        {"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}])))
    holder.start()  # its task holds the only model slot until the gate opens
    try:
        assert vlm.asked.acquire(timeout=10)
        two = [{"id": i, "data": {"image": f"/data/upload/5/{n}.jpg"}} for i, n in ((2, "b"), (3, "c"))]
        monkeypatch.setenv("PREDICT_SLOT_WAIT", "0.5")
        t0 = time.monotonic()
        r = client.post("/predict", json={"tasks": two, "project": "5.1", "label_config": config})
        took = time.monotonic() - t0
        # the request is turned away as a whole, not answered with an error per task
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.get_data(as_text=True)
        assert r.json["detail"].startswith("this backend worker is busy: no model slot came free within 0.5 s")
        assert 0.5 <= took < 5
        # a PREDICT_DEADLINE shorter than the slot wait ends the wait as before: an error per task
        monkeypatch.setenv("PREDICT_SLOT_WAIT", "30")
        monkeypatch.setenv("PREDICT_DEADLINE", "1")
        body = _predict(client, config, two)
        assert body["results"] == [[], []]
        assert "1 s deadline (PREDICT_DEADLINE; Label Studio waits 100 s) ran out while waiting for a model slot" \
            in body["errors"][0]["reason"]
        assert "ran out before the image was downloaded" in body["errors"][1]["reason"]  # one task at a time
    finally:
        vlm.gate.set()
        holder.join(30)
    assert first["r"]["results"][0]["score"] is not None


def test_a_vlm_that_never_answers_is_cut_by_the_request_deadline(backend, ls_files, monkeypatch):
    from pipeline.providers.openai_vlm import OpenAIVLM

    monkeypatch.setenv("PREDICT_DEADLINE", "2")
    silent = SilentServer()
    try:
        # 4 attempts x 5 s without the deadline
        client, config, _, _ = backend(vlm=OpenAIVLM(silent.url, "m", timeout=5, retries=3, backoff=0.1))
        ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
        t0 = time.monotonic()
        body = _predict(client, config, [{"id": i, "data": {"image": "/data/upload/5/a.jpg"}} for i in (1, 2)])
        took = time.monotonic() - t0
        assert silent.conns, "the VLM server was never asked"
    finally:
        silent.close()
    assert body["results"] == [[], []]
    for err in body["errors"]:
        assert "the request's 2 s deadline (PREDICT_DEADLINE; Label Studio waits 100 s) ran out" in err["reason"]
        assert silent.url in err["reason"]
    assert took < 12, took  # 2 s plus slack; 20 s and more without the deadline


@pytest.fixture
def brush(backend, ls_files):
    """A brush project (its masks from providers.segmenter, facebook/sam-vit-base by default, which is not on
    this machine) and three tasks; the registry is emptied before and after."""
    from pipeline.providers import registry
    registry.providers.clear()
    client, config, _, _ = backend(label_config=labeling_config(parse_project(PROJECT), masks="brush"))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    tasks = [{"id": i, "data": {"image": "/data/upload/5/a.jpg"}} for i in (1, 2, 3)]
    yield client, config, tasks
    registry.providers.clear()


def _predict_fails(client, config, tasks) -> str:
    r = client.post("/predict", json={"tasks": tasks, "project": "5.1700000000", "label_config": config})
    assert r.status_code == 500, r.get_data(as_text=True)
    assert "errors" not in r.json and "results" not in r.json  # the request failed, not its tasks one by one
    return r.json["detail"]


def test_a_model_that_is_not_on_the_machine_fails_the_request_at_once(brush):
    detail = _predict_fails(*brush)
    assert detail.startswith("ModelUnavailable: segmenter model 'facebook/sam-vit-base' is not on this machine")
    assert "hf download facebook/sam-vit-base" in detail and "label-factory up --models tiny" in detail
    assert "HF_HUB_OFFLINE" in detail and "image" not in detail


def test_a_model_still_loading_at_the_deadline_fails_the_request_not_its_images(brush, monkeypatch):
    """One model slot, three tasks, a segmenter whose load outlasts PREDICT_DEADLINE: the request answers when
    the deadline runs out, saying the model was loading (not that a later task's image download ran out of
    time), and the load goes on for the next request."""
    from pipeline.providers import registry
    from pipeline.providers.sam import SamSegmenter
    from tests.doubles.providers import ColourSegmenter
    monkeypatch.setenv("PREDICT_DEADLINE", "2")
    monkeypatch.setenv("PREDICT_CONCURRENCY", "1")
    release = threading.Event()
    monkeypatch.setattr(SamSegmenter, "from_config", classmethod(lambda cls, cfg: release.wait(20) and
                                                                 ColourSegmenter()))
    t0 = time.monotonic()
    try:
        detail = _predict_fails(*brush)
        took = time.monotonic() - t0
    finally:
        release.set()
    assert "the request's 2 s deadline (PREDICT_DEADLINE; Label Studio waits 100 s) ran out while the segmenter " \
           "'facebook/sam-vit-base' was loading" in detail and "image" not in detail
    assert took < 12, took  # 2 s plus slack; 20 s (the load) without the deadline
    for _ in range(100):  # the load finishes in the background
        if registry.providers.keys():
            break
        time.sleep(0.05)
    client, config, tasks = brush
    assert all(p["result"] for p in _predict(client, config, tasks)["results"])


def test_allow_list_refuses_other_hosts(backend, ls_files, monkeypatch):
    other, refused = FileServer(), FileServer("127.0.0.2")  # a loopback alias the backend must refuse
    try:
        other.files["/cat.jpg"] = jpeg_bytes()
        # a redirect from an allowed host to a host that is not allowed
        ls_files_alias = f"http://localhost:{ls_files.httpd.server_address[1]}"
        other.files["/hop.jpg"] = (302, {"Location": ls_files_alias + "/private.jpg"}, b"")
        client, config, _, _ = backend()
        tasks = [{"id": 1, "data": {"image": other.url + "/cat.jpg"}},
                 {"id": 2, "data": {"image": "file:///etc/passwd"}},
                 {"id": 3, "data": {"image": refused.url + "/latest/meta-data/"}}]
        body = _predict(client, config, tasks)
        assert body["results"] == [[], [], []]
        assert all("refusing" in e["reason"] or "unsupported" in e["reason"] for e in body["errors"])
        assert other.requests == [] and refused.requests == []  # refused before any request

        monkeypatch.setenv("ALLOWED_IMAGE_HOSTS", f"cdn.example.com, 127.0.0.1:{other.httpd.server_address[1]}")
        body = _predict(client, config, [{"id": 4, "data": {"image": other.url + "/cat.jpg"}},
                                         {"id": 5, "data": {"image": other.url + "/hop.jpg"}}])
        assert body["results"][0]["result"] and body["results"][1] == []
        assert "localhost" in body["errors"][0]["reason"] and "refusing" in body["errors"][0]["reason"]
        assert other.hits("/cat.jpg")[0]["authorization"] is None  # the token only goes to Label Studio
        assert ls_files.hits("/private.jpg") == []
    finally:
        other.close()
        refused.close()


def test_predict_refuses_every_spelling_that_names_another_host(backend, ls_files):
    """/predict with the URL spellings of tests/doubles/urls.py: each task fails with the refusal,
    the others of the request are answered, and nothing reaches the canary on 127.0.0.2."""
    from tests.doubles.servers import Canary
    from tests.doubles.urls import SPELLINGS

    canary = Canary()
    try:
        ls_files.files["/data/upload/2/x.jpg"] = jpeg_bytes()
        ls = ls_files.url.split("//", 1)[1]
        urls = [t.format(c=canary.netloc, cp=canary.port, ls=ls, a=ls) for t in SPELLINGS]
        client, config, _, _ = backend()
        tasks = [{"id": i, "data": {"image": u}} for i, u in enumerate(urls)] + \
            [{"id": 99, "data": {"image": "/data/upload/2/x.jpg"}}]
        body = _predict(client, config, tasks)
        time.sleep(0.2)
    finally:
        canary.close()
    assert canary.received == []
    assert body["results"][:-1] == [[]] * len(urls) and body["results"][-1]["result"]
    assert sorted(e["task"] for e in body["errors"]) == list(range(len(urls)))
    assert all("refusing" in e["reason"] or "unsupported" in e["reason"] for e in body["errors"]), body["errors"]
    assert ls_files.hits("/data/upload/2/x.jpg") and all(
        r["path"] == "/data/upload/2/x.jpg" for r in ls_files.requests)


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


def _region(rid, x, origin, label="Stop Sign", score=None):
    """A rectangle as Label Studio 1.23's frontend serializes it into context.result."""
    return regions_.region("rect", {"x": x, "y": 10.0, "width": 20.0, "height": 30.0, "rotation": 0}, label,
                           rid=rid, size=(200, 100), origin=origin, score=score)


def test_interactive_answers_only_the_rectangle_just_drawn(backend, ls_files, caplog):
    """Label Studio sends every rectangle with the drawn one's label: the predicted ones, a suggestion
    accepted earlier, and last the one just drawn. One suggestion comes back, for that one."""
    client, config, vlm, grounder = backend(vlm=KnownVLM(0.6))
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((200, 100))
    ctx = {"result": [_region("pred1", 0.0, "prediction", score=0.48), _region("pred2", 70.0, "prediction-changed"),
                      _region("accepted", 40.0, "manual", score=0.7), _region("justdrawn", 55.0, "manual")]}
    with caplog.at_level(logging.INFO):
        body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    (region,) = body["results"][0]["result"]
    assert region["value"]["x"] == pytest.approx(55.0) and region["score"] == pytest.approx(0.6)
    assert vlm.questions == ["Is this a stop sign? Answer YES or NO."] and grounder.calls == []  # one box verified
    assert "interactive: project 5 task 1: drawn box Stop Sign at x=55.0% y=10.0% w=20.0% h=30.0% " \
           "(4 region(s) in the context): 1 box(es) suggested" in caplog.text


def test_interactive_with_only_predicted_regions_suggests_nothing(backend, ls_files, caplog):
    client, config, vlm, grounder = backend()
    ctx = {"result": [_region("pred1", 0.0, "prediction", score=0.48)]}
    with caplog.at_level(logging.INFO):
        body = _predict(client, config, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    assert body["results"][0]["result"] == []  # not the whole image's boxes
    assert vlm.questions == [] and grounder.calls == [] and ls_files.requests == []
    assert "nothing to answer (1 region(s) in the context): no suggestion" in caplog.text


def test_interactive_prompt_is_logged(backend, ls_files, caplog):
    client, config, _, grounder = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 100))
    ctx = {"result": [{"from_name": "prompt", "to_name": "image", "type": "textarea", "origin": "manual",
                       "value": {"text": ["red thing"]}}]}
    with caplog.at_level(logging.INFO):
        body = _predict(client, config, [{"id": 3, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    assert len(body["results"][0]["result"]) == 1 and grounder.calls == [["red thing"]]
    assert "task 3: prompt 'red thing' (1 region(s) in the context): 1 box(es) suggested" in caplog.text


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
    assert r.status_code == 422 and "inside PROJECTS_DIR" in r.json["detail"]
    # a project that does not exist is refused and not stored: project 9 keeps its YAML
    r = client.post("/setup", json={"project": "9.1", "schema": config, "extra_params": {"project": "nope"}})
    assert r.status_code == 422 and "no project 'nope'" in r.json["detail"]
    r = client.post("/predict", json={"tasks": [], "project": "9.1", "label_config": config})
    assert r.status_code == 200 and r.json["model_version"] == v_extra
    # the version follows the YAML
    (tmp_path / "projects" / "drones.yaml").write_text(yaml.safe_dump({**other, "thresholds": {"verify": 0.9}}))
    time.sleep(0.01)
    v_new = client.post("/setup", json={"project": "9.1", "schema": config}).json["model_version"]
    assert v_new.startswith("drones-") and v_new != v_extra


_NOT_A_NAME = "is not a file name: at most 255 characters, no control characters"
_ONLY = "this backend reads only 'project' or 'project_config'"


@pytest.mark.parametrize("extra, detail", [
    ({"project": "x" * 10_000}, f"extra params: project '{'x' * 60}…' {_NOT_A_NAME}"),
    ({"project": "drones\x00.yaml"}, f"extra params: project 'drones\\x00.yaml' {_NOT_A_NAME}"),
    ({"project": "d" * 255}, f"extra params: no project '{'d' * 60}…' in PROJECTS_DIR"),  # 260 with .yaml: too long
    ({"project": "nope"}, "extra params: no project 'nope' in PROJECTS_DIR"),  # where PROJECTS_DIR is stays unsaid
    ({"projet": "drones"}, f"extra params: unknown key(s) 'projet'; {_ONLY}"),
    ({"project": "drones", "threshold": 0.3}, f"extra params: unknown key(s) 'threshold'; {_ONLY}"),
])
def test_extra_params_it_cannot_use_are_refused_in_one_line_without_server_paths(backend, tmp_path, extra, detail):
    client, config, _, _ = backend()
    (tmp_path / "projects" / "drones.yaml").write_text(yaml.safe_dump({**PROJECT, "project_name": "drones"}))
    good = client.post("/setup", json={"project": "9.1", "schema": config, "extra_params": {"project": "drones"}})
    assert good.status_code == 200 and good.json["model_version"].startswith("drones-")
    r = client.post("/setup", json={"project": "9.1", "schema": config, "extra_params": extra})
    assert (r.status_code, r.json["result"]["error"], r.json["detail"]) == (422, "ExtraParamsError", detail)
    # nothing refused was stored: the project keeps its YAML
    r = client.post("/predict", json={"tasks": [], "project": "9.1", "label_config": config})
    assert r.status_code == 200 and r.json["model_version"] == good.json["model_version"]


def test_a_task_whose_data_is_not_an_object_fails_alone(backend, ls_files):
    client, config, _, _ = backend()
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes()
    body = _predict(client, config, [{"id": 1, "data": "/data/upload/5/a.jpg"},
                                     {"id": 2, "data": {"image": "/data/upload/5/a.jpg"}},
                                     {"id": 3, "data": ["/data/upload/5/a.jpg"]}])
    assert body["results"][0] == [] and body["results"][1]["result"] and body["results"][2] == []
    assert body["errors"] == [{"task": 1, "reason": "task data must be a JSON object, got str"},
                              {"task": 3, "reason": "task data must be a JSON object, got list"}]
    # a request with nothing that can be answered is the request's fault
    r = client.post("/predict", json={"tasks": [{"id": 4, "data": 7}, {"id": 5, "data": "x"}], "project": "5.1",
                                      "label_config": config})
    assert (r.status_code, r.json["detail"]) == (400, "task 4: task data must be a JSON object, got int (and 1 more "
                                                      "task(s))")


def test_misconfiguration_is_reported_as_json(backend, tmp_path, monkeypatch):
    client, config, _, _ = backend()
    monkeypatch.setenv("PROJECT_CONFIG", str(tmp_path / "nope.yaml"))
    r = client.post("/setup", json={"project": "1.1", "schema": config})
    assert r.status_code == 500 and "nope.yaml" in r.json["detail"]  # the backend's own setting: its fault
    client, config, _, _ = backend()
    no_rect = '<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>'
    r = client.post("/predict", json={"tasks": [{"id": 1}], "project": "1.1", "label_config": no_rect})
    assert r.status_code == 422 and "RectangleLabels" in r.json["detail"]  # the project's config: a client error


# -- the identify stage inside the auto-label backend ------------------------------------------------
# Decision: a box identify answers "unknown" (below the YAML's providers.identify.min_cosine /
# min_margin) keeps its grounding label and verify score and carries no identity result.

IDENTIFY_PROJECT = {**PROJECT, "stages": {"filter": True, "ground": True, "verify": True, "identify": True},
                    "providers": {"identify": {"min_cosine": 0.7, "min_margin": 0.02, "top_k": 3}}}
BASE_CONFIG = labeling_config(parse_project(PROJECT))
CONFIG_TEXTAREA = BASE_CONFIG.replace(
    "</View>", '  <TextArea name="name" toName="image" perRegion="true" editable="true"/>\n</View>')
CONFIG_CHOICES = BASE_CONFIG.replace(
    "</View>", '  <Choices name="which" toName="image" perRegion="true">'
               '<Choice value="Octagon Deluxe"/><Choice value="Give Way Classic"/></Choices>\n</View>')
CONFIG_LABELS = BASE_CONFIG.replace(
    '</RectangleLabels>', '<Label value="octagon deluxe"/><Label value="Fast Sign" predicted_values="Speed 50"/>'
                          '</RectangleLabels>')
# pipeline label -> what the injected identifier answers for boxes with that label
ANSWERS = {"Stop Sign": ("Octagon Deluxe", 0.93, 0.2), "Yield": (UNKNOWN, 0.41, 0.01),
           "Speed": ("Speed 50", 0.88, 0.3)}


class FakeIdentifier:
    """The Pipeline identify hook with known answers (by the box's pipeline label)."""

    def __init__(self, answers, version, provider):
        self.answers, self.last_version, self.provider = answers, version, provider
        self.seen: list[list[str]] = []

    def __call__(self, image, dets):
        idx = dets.active_index()
        self.seen.append([str(dets.labels[i]) for i in idx])
        matches = []
        for i in idx:
            label, cos, margin = self.answers[str(dets.labels[i])]
            matches.append(Match(label, label, None, cos, margin, label != UNKNOWN))
        dets.set_identities(idx, matches)


class FakeIdentifyService:
    """pipeline.references.service.IdentifyService's surface used by AutoLabelModel."""

    def __init__(self, answers=ANSWERS, version=3):
        self.answers, self.version = answers, version
        self.identifiers: list[FakeIdentifier] = []
        self.calls: list[tuple] = []
        self.watched: list[tuple] = []

    def identifier(self, project_id, provider=None, pin=False):
        self.calls.append(("identifier", project_id, pin))
        ident = FakeIdentifier(self.answers, self.version, provider)
        self.identifiers.append(ident)
        return ident

    def index_version(self, project_id):
        return self.version

    def watch(self, project_id, data_key=None):
        self.watched.append((project_id, data_key))

    @property
    def embedder(self):
        return None


@pytest.fixture
def identify_service(monkeypatch):
    svc = FakeIdentifyService()
    monkeypatch.setattr(idservice, "service", lambda: svc)
    return svc


@pytest.fixture(autouse=True)
def _no_process_identify_service(monkeypatch):
    """Every test gets its own identify service (none leaks from another test's MODEL_DIR), and its
    journal thread stops with the test."""
    idservice.set_service(None)
    yield
    if isinstance(idservice.loaded_service(), idservice.IdentifyService):
        idservice.loaded_service().stop()
    idservice.set_service(None)


def _by_id(results):
    rects = {r["id"]: r for r in results if r["type"] == "rectanglelabels"}
    others = {r["id"]: r for r in results if r["type"] != "rectanglelabels"}
    return rects, others


def test_identity_in_a_per_region_textarea(backend, ls_files, identify_service):
    client, _, _, _ = backend(project=IDENTIFY_PROJECT, label_config=CONFIG_TEXTAREA)
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 50))
    body = _predict(client, CONFIG_TEXTAREA, [{"id": 11, "data": {"image": "/data/upload/5/a.jpg"}}])
    (pred,) = body["results"]
    assert body["model_version"].startswith("signs-") and body["model_version"].endswith("-openai+falcon+identify-v3")
    assert pred["model_version"] == body["model_version"]
    assert identify_service.calls == [("identifier", "5", True)]  # one pinned snapshot for the request
    assert set(identify_service.watched) == {("5", "image")}  # caught up with Label Studio (journal.py)
    provider = identify_service.identifiers[0].provider
    assert (provider.min_cosine, provider.min_margin, provider.top_k) == (0.7, 0.02, 3)  # the YAML's thresholds
    rects, names = _by_id(pred["result"])
    by_label = {r["value"]["rectanglelabels"][0]: r for r in rects.values()}
    assert set(by_label) == {"Stop Sign", "Yield", "Speed"}  # grounding labels stay on the boxes
    for r in rects.values():
        assert (r["from_name"], r["to_name"]) == ("label", "image")
        assert r["score"] == pytest.approx(0.9)  # verify's P(yes)
    stop, speed, yld = by_label["Stop Sign"], by_label["Speed"], by_label["Yield"]
    assert set(names) == {stop["id"], speed["id"]}  # "unknown": no identity result for the Yield box
    text = names[stop["id"]]
    assert (text["from_name"], text["to_name"], text["type"]) == ("name", "image", "textarea")
    assert text["value"]["text"] == ["Octagon Deluxe"] and text["score"] == pytest.approx(0.93)
    assert {k: text["value"][k] for k in ("x", "y", "width", "height")} == \
        {k: stop["value"][k] for k in ("x", "y", "width", "height")}
    assert names[speed["id"]]["value"]["text"] == ["Speed 50"]
    assert names[speed["id"]]["score"] == pytest.approx(0.88)
    assert yld["meta"]["text"][0].startswith("unknown")
    assert pred["score"] == pytest.approx(0.8)  # the task's certainty: from the boxes' decisions, not the names'


def test_identity_in_per_region_choices_when_it_is_a_choice(backend, ls_files, identify_service):
    client, _, _, _ = backend(project=IDENTIFY_PROJECT, label_config=CONFIG_CHOICES)
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 50))
    body = _predict(client, CONFIG_CHOICES, [{"id": 11, "data": {"image": "/data/upload/5/a.jpg"}}])
    rects, others = _by_id(body["results"][0]["result"])
    by_label = {r["value"]["rectanglelabels"][0]: r for r in rects.values()}
    assert set(by_label) == {"Stop Sign", "Yield", "Speed"}
    (choice,) = others.values()  # "Speed 50" is no choice: its box keeps its label, no result
    assert choice["id"] == by_label["Stop Sign"]["id"]
    assert (choice["from_name"], choice["to_name"], choice["type"]) == ("which", "image", "choices")
    assert choice["value"]["choices"] == ["Octagon Deluxe"] and choice["score"] == pytest.approx(0.93)


def test_identity_as_the_rectangle_label(backend, ls_files, identify_service):
    client, _, _, _ = backend(project=IDENTIFY_PROJECT, label_config=CONFIG_LABELS)
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 50))
    body = _predict(client, CONFIG_LABELS, [{"id": 11, "data": {"image": "/data/upload/5/a.jpg"}}])
    results = body["results"][0]["result"]
    assert all(r["type"] == "rectanglelabels" and r["from_name"] == "label" for r in results)
    got = sorted((r["value"]["rectanglelabels"][0], round(r["score"], 2)) for r in results)
    # identities replace the grounding label, scored with the cosine (case-insensitive name, alias);
    # the unknown Yield keeps its label and its verify score
    assert got == [("Fast Sign", 0.88), ("Yield", 0.9), ("octagon deluxe", 0.93)]


def test_identify_off_leaves_results_and_fit_alone(backend, ls_files, identify_service):
    client, _, _, _ = backend(label_config=CONFIG_TEXTAREA)  # stages.identify defaults to false
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((100, 50))
    body = _predict(client, CONFIG_TEXTAREA, [{"id": 11, "data": {"image": "/data/upload/5/a.jpg"}}])
    assert {r["type"] for r in body["results"][0]["result"]} == {"rectanglelabels"}
    assert "identify" not in body["model_version"] and identify_service.calls == []
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1},
                                      "project": {"id": 5, "label_config": CONFIG_TEXTAREA}})
    assert r.status_code == 201 and r.json["result"]["status"] == "ignored"
    assert "stages.identify is off" in r.json["result"]["reason"]



def test_start_training_for_a_project_that_serves_no_student_is_refused_with_the_reason(backend, tmp_path):
    client, config, _, _ = backend()  # the cascade alone, identify off: Start Training has nothing to do
    r = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 5, "label_config": config}})
    assert r.status_code == 400 and "serves no student" in r.json["detail"] and "route.student" in r.json["detail"]
    assert not (tmp_path / "model-dir" / "training" / "5" / "runs").exists()

def test_interactive_drawn_box_gets_verify_score_and_identity(backend, ls_files, identify_service):
    client, _, vlm, grounder = backend(project=IDENTIFY_PROJECT, vlm=KnownVLM(0.3), label_config=CONFIG_TEXTAREA)
    ls_files.files["/data/upload/5/a.jpg"] = jpeg_bytes((200, 100))
    drawn = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0, "rectanglelabels": ["Stop Sign"]}
    ctx = {"result": [{"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": drawn,
                       "original_width": 200, "original_height": 100},
                      # a per-region name in the context is no text prompt
                      {"from_name": "name", "to_name": "image", "type": "textarea",
                       "value": {**drawn, "text": ["my guess"]}}]}
    body = _predict(client, CONFIG_TEXTAREA, [{"id": 1, "data": {"image": "/data/upload/5/a.jpg"}}], context=ctx)
    rects, names = _by_id(body["results"][0]["result"])
    (rect,) = rects.values()  # P(yes)=0.3 < verify threshold, kept anyway: they drew it
    assert rect["score"] == pytest.approx(0.3) and rect["value"]["rectanglelabels"] == ["Stop Sign"]
    assert names[rect["id"]]["value"]["text"] == ["Octagon Deluxe"]  # ... and identified all the same
    assert grounder.calls == [] and len(vlm.questions) == 1
    assert body["model_version"].endswith("+identify-v3")


# -- fit(): Label Studio webhooks keep the index current (real identify service, tiny CLIP) ------------
class FakeLabelStudio:
    """label-studio-sdk's surface START_TRAINING uses: projects.get, tasks.list(project, fields)."""

    def __init__(self, tasks):
        outer = self
        self.task_list = tasks

        class Projects:
            def get(self, id):
                return {"id": id}

        class Tasks:
            def list(self, project, fields=None, page=1, page_size=100, **kw):  # a page past the last: 404
                return page_of([t for t in outer.task_list if t["project"] == project], page, page_size)

        self.projects, self.tasks = Projects(), Tasks()





def test_fit_through_webhook_updates_the_index_and_model_version(backend, ls_files, tmp_path, monkeypatch,
                                                                  clip_embedder):
    from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
    from pipeline.references.service import IdentifyService
    from tests.doubles.images import card, scene
    from tests.doubles.label_studio import webhook
    from tests.doubles.regions import ls_rect

    cards = [card(300 + i) for i in range(2)]
    shelf, (b0, b1) = scene([(cards[0], 10, 20, 1.0), (cards[1], 150, 60, 1.1)])
    query, (qbox,) = scene([(cards[1], 90, 30, 1.3)], size=(300, 280), background=(90, 90, 90))
    ls_files.files["/data/upload/5/shelf.png"] = png(shelf)
    ls_files.files["/data/upload/5/query.png"] = png(query)
    w, h = shelf.size
    task = {"id": 21, "project": 5, "data": {"image": "/data/upload/5/shelf.png"}}
    result = [ls_rect(b0, w, h, "Stop Sign", "r0"), ls_rect(b1, w, h, "Stop Sign", "r1")]
    result += [{"id": rid, "from_name": "name", "to_name": "image", "type": "textarea",
                "value": {**xyxy_to_ls(b, w, h), "text": [name]}}
               for rid, b, name in (("r0", b0, "Dark Magician"), ("r1", b1, "Pot Of Greed"))]
    ann = {"id": 77, "result": result}
    ls = FakeLabelStudio([])
    svc = IdentifyService(embedder=clip_embedder, model_dir=tmp_path / "model-dir", client_factory=lambda: ls)
    monkeypatch.setattr(idservice, "service", lambda: svc)
    qw, qh = query.size
    frac = (qbox[0] / qw, qbox[1] / qh, qbox[2] / qw, qbox[3] / qh, 0.9)
    project = {**IDENTIFY_PROJECT, "providers": {"identify": {"min_cosine": 0.5, "min_margin": 0.0}}}
    client, _, _, _ = backend(project=project, label_config=CONFIG_TEXTAREA,
                              grounder=KnownGrounder({"stop sign": [frac]}))

    def setup_version():
        return client.post("/setup", json={"project": "5.1700000000", "schema": CONFIG_TEXTAREA}).json["model_version"]

    def hook(action, **body):  # journalled and answered at once; applied by the service's thread
        r = client.post("/webhook", json={"action": action, **body})
        assert r.status_code == 201 and r.json["result"]["status"] == "queued", r.get_data(as_text=True)
        return svc.journal.wait(r.json["result"]["journal_id"], 60)["result"]

    def predict_names():
        body = _predict(client, CONFIG_TEXTAREA, [{"id": 22, "data": {"image": "/data/upload/5/query.png"}}])
        rects, names = _by_id(body["results"][0]["result"])
        assert [r["value"]["rectanglelabels"] for r in rects.values()] == [["Stop Sign"]]
        return [n["value"]["text"][0] for n in names.values()], body["model_version"]

    v0 = setup_version()
    assert v0.endswith("+identify-v0")
    base = v0[:-len("+identify-v0")]
    assert predict_names() == ([], v0)  # empty index: nothing to name

    body = webhook("ANNOTATION_CREATED", 5, task, ann)
    body["project"]["label_config"] = CONFIG_TEXTAREA
    res = hook(**body)
    assert res["status"] == "ok" and res["vectors_added"] == 2 and res["index_version"] == 1
    assert res["labels"] == ["Dark Magician", "Pot Of Greed"]
    assert setup_version() == base + "+identify-v1"
    assert predict_names() == (["Pot Of Greed"], base + "+identify-v1")  # a shifted, rescaled copy

    # Label Studio 1.23 deletes with the plural event and a list of ids
    res = hook("ANNOTATIONS_DELETED", annotations=[{"id": 77}], project={"id": 5, "label_config": CONFIG_TEXTAREA})
    assert res["status"] == "ok" and res["annotations"] == [77] and res["vectors"] == 0
    assert res["index_version"] == 2
    assert predict_names() == ([], base + "+identify-v2")

    # Start Training rebuilds the index from every annotation Label Studio has
    ls.task_list = [{**task, "annotations": [{**ann, "task": 21, "was_cancelled": False}]}]
    res = hook("START_TRAINING", project={"id": 5, "label_config": CONFIG_TEXTAREA})
    assert res["status"] == "ok" and res["vectors"] == 2 and res["index_version"] == 3
    assert setup_version() == base + "+identify-v3"
    assert predict_names() == (["Pot Of Greed"], base + "+identify-v3")

    # the YAML's thresholds decide "unknown": the box keeps its grounding label and gets no name
    strict = {**project, "providers": {"identify": {"min_cosine": 0.5, "min_margin": 2.0}}}
    time.sleep(0.01)
    (tmp_path / "projects" / "signs.yaml").write_text(yaml.safe_dump(strict))
    names, version = predict_names()
    assert names == [] and version.endswith("+identify-v3") and version != base + "+identify-v3"
    assert not (tmp_path / "cache.db").exists() and (tmp_path / "model-dir" / "cache.db").exists()
