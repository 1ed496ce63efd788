"""fit() on Label Studio webhook payloads, START_TRAINING rebuilds, the Pipeline hook, the backend class,
and concurrent predict/fit."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface

from pipeline.identify.index import UNKNOWN, IndexSnapshot, IndexStore, make_entry
from pipeline.identify.stage import Identifier
from pipeline.references.fit import ProjectIndexes, fit, regions_of
from tests import REPO
from tests.doubles.images import card, scene
from tests.doubles.label_studio import page_of, webhook
from tests.doubles.regions import ls_rect
from tests.ls_helpers import assert_valid_prediction

PID = 3


class Images:
    """An image fetcher over an in-memory 'Label Studio': task['data']['image'] -> PIL image."""

    def __init__(self):
        self.by_url, self.calls = {}, 0
        self._lock = threading.Lock()

    def put(self, url, image):
        self.by_url[url] = image
        return url

    def __call__(self, task):
        with self._lock:
            self.calls += 1
        url = task["data"]["image"]
        if url not in self.by_url:
            raise FileNotFoundError(f"{url}: 404 Not Found")
        return self.by_url[url]


class FakeClient:
    """label-studio-sdk's surface used by START_TRAINING: projects.get, tasks.list(project, fields) page by page."""

    def __init__(self, tasks, projects=(PID,)):
        outer = self
        self.tasks_data, self.project_ids, self.listed = tasks, set(projects), 0

        class Projects:
            def get(self, id):
                if id not in outer.project_ids:
                    raise RuntimeError("status_code: 404, body: {'detail': 'Not found.'}")
                return {"id": id}

        class Tasks:
            def list(self, project, fields=None, page=1, page_size=100, **kw):  # a page past the last: 404
                outer.listed += 1
                assert fields == "all"
                return page_of([t for t in outer.tasks_data if t["project"] == project], page, page_size)

            def get(self, id):
                return next(t for t in outer.tasks_data if t["id"] == id)

        self.projects, self.tasks = Projects(), Tasks()


@pytest.fixture()
def world(tmp_path):
    """Three cards; task 1 shows cards 0 and 1, task 2 shows card 2; a query scene shows card 1 shifted."""
    cards = [card(100 + i) for i in range(4)]
    images = Images()
    img1, boxes1 = scene([(cards[0], 10, 20, 1.0), (cards[1], 150, 60, 1.1)])
    img2, boxes2 = scene([(cards[2], 60, 50, 1.3)])
    t1 = {"id": 1, "project": PID, "data": {"image": images.put("/data/upload/3/t1.png", img1)}}
    t2 = {"id": 2, "project": PID, "data": {"image": images.put("/data/upload/3/t2.png", img2)}}
    w, h = img1.size
    ann1 = {"id": 11, "result": [ls_rect(boxes1[0], w, h, "Card", "r-a"), ls_rect(boxes1[1], w, h, "Card", "r-b")]}
    # per-region TextArea names the cards (the label the index learns)
    ann1["result"] += [
        {"id": "r-a", "from_name": "name", "to_name": "image", "type": "textarea",
         "value": {**ann1["result"][0]["value"], "text": ["Dark Magician"]}},
        {"id": "r-b", "from_name": "name", "to_name": "image", "type": "textarea",
         "value": {**ann1["result"][1]["value"], "text": ["Pot Of Greed"]}}]
    w2, h2 = img2.size
    ann2 = {"id": 12, "result": [ls_rect(boxes2[0], w2, h2, "Mirror Force", "r-c")]}
    return type("World", (), dict(cards=cards, images=images, t1=t1, t2=t2, ann1=ann1, ann2=ann2,
                                  indexes=ProjectIndexes(tmp_path / "model-dir"), boxes1=boxes1))


def _fit(world, action, task, ann, emb, **kw):
    return fit(action, _payload(action, task, ann), world.indexes, world.images, emb, **kw)


def _payload(action, task, ann):
    body = webhook(action, PID, task, ann)
    body.pop("action")  # the /webhook route pops it and passes (event, data)
    return body


def test_regions_of_reads_rectangles_and_per_region_names(world):
    regs = regions_of(world.ann1["result"], 320, 260)
    assert list(zip(regs.extra["region_id"], regs.labels)) == [("r-a", "Dark Magician"), ("r-b", "Pot Of Greed")]
    assert np.allclose(regs.xyxy[0], world.boxes1[0], atol=0.01)
    rot = ls_rect([100, 100, 140, 120], 320, 260, "X", "r")
    rot["value"]["rotation"] = 90  # rotated about the top-left corner: now spans x 80..100, y 100..140
    r = regions_of([rot], 320, 260)
    assert len(r) == 1 and np.allclose(r.xyxy[0], [80, 100, 100, 140], atol=0.01)
    poly = {"id": "p", "type": "polygonlabels", "value": {"points": [[10, 10], [20, 10], [20, 30]],
                                                           "polygonlabels": ["Y"]}}
    unlabelled = {"id": "u", "type": "rectangle", "value": {"x": 1, "y": 1, "width": 5, "height": 5}}
    r = regions_of([poly, unlabelled], 320, 260)  # a polygon is a region too; one without a label is not
    assert r.labels.tolist() == ["Y"] and np.allclose(r.xyxy[0], [32, 26, 64, 78], atol=0.01)


def test_created_updated_deleted(world, clip_embedder):
    res = _fit(world, "ANNOTATION_CREATED", world.t1, world.ann1, clip_embedder)
    assert res["status"] == "ok" and res["vectors_added"] == 2 and res["index_version"] == 1
    res = _fit(world, "ANNOTATION_CREATED", world.t2, world.ann2, clip_embedder)
    assert res["vectors"] == 3 and res["index_version"] == 2
    snap = world.indexes.get(PID).current()
    assert sorted(snap.labels) == ["Dark Magician", "Mirror Force", "Pot Of Greed"]
    src = next(e["source"] for e in snap.entries if e["label"] == "Pot Of Greed")
    assert src["annotation"] == 11 and src["region"] == "r-b" and src["task"] == 1 and src["project"] == "3"

    # a new task shows card 1 shifted and rescaled: identified as Pot Of Greed
    ident = Identifier(world.indexes.get(PID), clip_embedder, min_cosine=0.0, min_margin=0.0)
    q, (qbox,) = scene([(world.cards[1], 90, 30, 1.3)])
    (m,), version = ident.identify_boxes(q, [qbox])
    assert m.label == "Pot Of Greed" and version == 2

    # update: region r-b removed, r-a renamed -> the annotation's vectors are replaced
    upd = {"id": 11, "result": [world.ann1["result"][0], {**world.ann1["result"][2],
                                                          "value": {**world.ann1["result"][2]["value"],
                                                                    "text": ["Dark Magician Girl"]}}]}
    res = _fit(world, "ANNOTATION_UPDATED", world.t1, upd, clip_embedder)
    assert res["vectors_added"] == 1 and res["index_version"] == 3
    assert sorted(world.indexes.get(PID).current().labels) == ["Dark Magician Girl", "Mirror Force"]

    # deleted (Label Studio's ML webhook shape, and the bulk ANNOTATIONS_DELETED shape)
    res = fit("ANNOTATION_DELETED", _payload("ANNOTATION_DELETED", world.t2, {"id": 12, "result": []}),
              world.indexes, world.images, clip_embedder)
    assert res["status"] == "ok" and res["vectors"] == 1
    res = fit("ANNOTATIONS_DELETED", {"project": {"id": PID}, "annotations": [{"id": 11}]}, world.indexes,
              world.images, clip_embedder)
    assert res["vectors"] == 0 and res["index_version"] == 5
    # bulk import: ANNOTATIONS_CREATED carries lists of annotations (new ones: Label Studio never reuses an id)
    res = fit("ANNOTATIONS_CREATED", {"project": {"id": PID}, "annotation": [{**world.ann1, "id": 21, "task": 1},
                                                                            {**world.ann2, "id": 22, "task": 2}],
                                      "task": [world.t1, world.t2]}, world.indexes, world.images, clip_embedder)
    assert res["status"] == "ok" and res["vectors_added"] == 3 and res["index_version"] == 7


def test_incremental_event_costs_one_annotation(world, clip_embedder):
    """Adding to an index that already holds many vectors embeds only the new annotation's crops."""
    store = world.indexes.get(PID)
    rng = np.random.default_rng(0)
    store.add(rng.normal(size=(5000, clip_embedder.dim)),
              [make_entry(f"L{i}", annotation=1000 + i, region="r") for i in range(5000)], clip_embedder.id)
    calls = []
    real = clip_embedder.embed

    class Counting:
        dim, id, model_spec, pretrained = clip_embedder.dim, clip_embedder.id, "", None

        def embed(self, images):
            calls.append(len(images))
            return real(images)

    world.images.calls = 0
    res = _fit(world, "ANNOTATION_CREATED", world.t1, world.ann1, Counting())
    assert res["vectors"] == 5002 and calls == [2] and world.images.calls == 1


def test_bad_events_are_answered_not_raised(world, clip_embedder):
    gone = {"id": 9, "project": PID, "data": {"image": "/data/upload/3/deleted.png"}}
    res = _fit(world, "ANNOTATION_CREATED", gone, {"id": 99, "result": world.ann2["result"]}, clip_embedder)
    assert res["status"] == "error" and "image unavailable" in res["reason"] and "404" in res["reason"]
    served = ProjectIndexes(world.indexes.model_dir, projects=[PID])
    res = fit("ANNOTATION_CREATED", {**_payload("ANNOTATION_CREATED", world.t2, world.ann2), "project": {"id": 77}},
              served, world.images, clip_embedder)
    assert res["status"] == "ignored" and "unknown project 77" in res["reason"]
    assert fit("ANNOTATION_CREATED", {"annotation": {"id": 1}}, served, world.images, clip_embedder)["status"] \
        == "ignored"  # no project at all
    assert fit("ANNOTATION_CREATED", {"project": {"id": PID}}, world.indexes, world.images,
               clip_embedder)["status"] == "ignored"  # no annotation
    assert fit("PROJECT_UPDATED", {"project": {"id": PID}}, world.indexes, world.images,
               clip_embedder)["status"] == "ignored"
    res = fit("START_TRAINING", {"project": {"id": 77}}, world.indexes, world.images, clip_embedder,
              client=FakeClient([]))
    assert res["status"] == "error" and "project 77 not available" in res["reason"]
    # a cancelled (skipped) annotation removes its vectors
    _fit(world, "ANNOTATION_CREATED", world.t2, world.ann2, clip_embedder)
    res = _fit(world, "ANNOTATION_UPDATED", world.t2, {**world.ann2, "was_cancelled": True}, clip_embedder)
    assert res["status"] == "ok" and len(world.indexes.get(PID).current()) == 0


def test_start_training_rebuilds_from_label_studio(world, clip_embedder):
    store = world.indexes.get(PID)
    store.add(np.ones((1, clip_embedder.dim)), [make_entry("Stale", annotation=555, region="x")], clip_embedder.id)
    tasks = [{**world.t1, "annotations": [world.ann1, {"id": 13, "was_cancelled": True, "result": []}]},
             {**world.t2, "annotations": [world.ann2]},
             {"id": 3, "project": PID, "data": {"image": "/data/upload/3/missing.png"}, "annotations": [world.ann2]},
             {"id": 4, "project": PID, "data": {"image": "/x.png"}, "annotations": []}]
    res = fit("START_TRAINING", {"project": {"id": PID}}, world.indexes, world.images, clip_embedder,
              client=FakeClient(tasks))
    assert res["status"] == "ok", res
    assert res["vectors"] == 3 and res["index_version"] == 2 and res["skipped"][0]["task"] == 3
    assert sorted(store.current().labels) == ["Dark Magician", "Mirror Force", "Pot Of Greed"]


def test_rebuild_keeps_events_that_land_while_it_runs(world, clip_embedder):
    """An annotation created and another deleted during a rebuild survive the rebuild's swap."""
    tasks = [{**world.t1, "annotations": [world.ann1]}, {**world.t2, "annotations": [world.ann2]}]
    slow = threading.Event()

    def fetch(task):
        if task["id"] == 2:
            slow.wait(10)
        return world.images(task)

    t = threading.Thread(target=fit, args=("START_TRAINING", {"project": {"id": PID}}, world.indexes, fetch,
                                           clip_embedder), kwargs={"client": FakeClient(tasks)})
    t.start()
    time.sleep(0.2)
    new = {"id": 21, "result": [ls_rect([0, 0, 96, 136], 96, 136, "Raigeki", "r-z")]}
    t3 = {"id": 5, "project": PID, "data": {"image": world.images.put("/data/upload/3/t5.png", world.cards[3])}}
    assert _fit(world, "ANNOTATION_CREATED", t3, new, clip_embedder)["status"] == "ok"
    assert fit("ANNOTATION_DELETED", {"project": {"id": PID}, "annotation": {"id": 12}}, world.indexes,
               world.images, clip_embedder)["status"] == "ok"
    slow.set()
    t.join(20)
    labels = sorted(world.indexes.get(PID).current().labels)
    assert labels == ["Dark Magician", "Pot Of Greed", "Raigeki"]  # 12 (Mirror Force) stays deleted


REBUILDER = textwrap.dedent("""
    import sys, time
    from PIL import Image
    from pipeline.references.fit import ProjectIndexes, fit
    from tests.doubles.label_studio import page_of
    from tests.doubles.providers import HashEmbedder
    from tests.doubles.regions import ls_rect

    def fetch(task):
        time.sleep(0.05)
        return Image.new("RGB", (64, 64), (task["id"] % 250, 10, 10))

    class Client:
        class projects:
            @staticmethod
            def get(id): return {"id": id}
        class tasks:
            @staticmethod
            def list(project, fields=None, page=1, page_size=100):
                if page == 1:
                    print("embedding", flush=True)  # the rebuild starts on the first page
                rows = [{"id": i, "project": project, "data": {"image": f"/t{i}.png"},
                         "annotations": [{"id": 1000 + i, "result": [ls_rect([0, 0, 32, 32], 64, 64, f"L{i}", "r")]}]}
                        for i in range(1, 400)]
                return page_of(rows, page, page_size)
    fit("START_TRAINING", {"project": {"id": 3}}, ProjectIndexes(sys.argv[1]), fetch, HashEmbedder(), client=Client())
    print("finished", flush=True)
""")


def test_sigkill_midway_through_a_rebuild_keeps_the_previous_index(tmp_path):
    indexes = ProjectIndexes(tmp_path)
    store = indexes.get(3)
    store.add(np.eye(32)[:2], [make_entry("Keep A", annotation=1, region="a"),
                               make_entry("Keep B", annotation=1, region="b")], "hash")
    proc = subprocess.Popen([sys.executable, "-c", REBUILDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "embedding"
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    snap = IndexSnapshot.load(store.path)
    assert snap.version == 1 and sorted(snap.labels) == ["Keep A", "Keep B"]
    assert IndexStore(store.path).current().version == 1


# -- the Pipeline hook and predictions ---------------------------------------------------------------
def test_identifier_as_pipeline_hook(world, clip_embedder):
    from pipeline.cascade import Pipeline
    from pipeline.config import parse_project
    from tests.doubles.providers import ScriptedGrounder, ScriptedVLM

    _fit(world, "ANNOTATION_CREATED", world.t1, world.ann1, clip_embedder)
    _fit(world, "ANNOTATION_CREATED", world.t2, world.ann2, clip_embedder)
    q, boxes = scene([(world.cards[1], 20, 30, 0.9), (world.cards[0], 170, 40, 1.2)])
    cfg = parse_project({"project_name": "cards", "target_object": "card",
                         "stages": {"filter": False, "verify": False, "identify": True},
                         "providers": {"identify": {"min_cosine": 0.0, "min_margin": 0.0}}})
    grounder = ScriptedGrounder([(boxes[0], 0.9, "card"), (boxes[1], 0.8, "card"), ([0, 0, 1, 1], 0.01, "card")])
    ident = Identifier.from_config(world.indexes.get(PID), clip_embedder, cfg.providers.identify)
    res = Pipeline(cfg, vlm=ScriptedVLM(lambda im, q: 1.0), grounder=grounder, identifier=ident).run(q)
    d = res.detections
    assert [m.label for m in d.identities[:2]] == ["Pot Of Greed", "Dark Magician"]
    assert d.identities[2] is None  # third box dropped by threshold: not identified
    assert d.identities[0].cosine > 0.9
    assert "identify" in res.timings
    rec = d.records()[0]
    assert rec["identity"]["label"] == "Pot Of Greed" and rec["identity"]["margin"] > 0

    strict = Identifier(world.indexes.get(PID), clip_embedder, min_cosine=1.01)
    strict(q, d)
    assert d.identities[0].label == UNKNOWN and d.identities[0].best_label == "Pot Of Greed"


CONFIG_TEXTAREA = """<View><Image name="image" value="$image"/>
<RectangleLabels name="label" toName="image"><Label value="Card"/></RectangleLabels>
<TextArea name="name" toName="image" perRegion="true"/></View>"""
CONFIG_LABELS = """<View><Image name="img" value="$photo"/>
<RectangleLabels name="box" toName="img"><Label value="Card"/><Label value="Pot of Greed"/>
<Label value="Mirror Force"/></RectangleLabels></View>"""


def test_backend_predict_and_webhook_through_flask(world, clip_embedder, monkeypatch):
    from backends.base import init_app
    from backends.identify import model as idmodel
    from pipeline.config import IdentifyProvider
    from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
    from pipeline.references import service as idservice

    svc = idservice.IdentifyService(IdentifyProvider(min_cosine=0.0, min_margin=0.0), embedder=clip_embedder,
                                  image_fetcher=world.images, client_factory=lambda: None)
    svc.indexes = world.indexes
    monkeypatch.setattr(idservice, "service", lambda: svc)
    monkeypatch.setenv("MODEL_DIR", str(world.indexes.model_dir))
    app = init_app(idmodel.IdentifyModel).test_client()

    def hook(body):  # journalled and answered at once; applied by the service's thread
        r = app.post("/webhook", json=body)
        assert r.status_code == 201 and r.json["result"]["status"] == "queued", r.json
        return svc.journal.wait(r.json["result"]["journal_id"], 60)["result"]

    body = webhook("ANNOTATION_CREATED", PID, world.t1, world.ann1)
    body["project"]["label_config"] = CONFIG_TEXTAREA
    res = hook(body)
    assert res["status"] == "ok" and res["index_version"] == 1

    q, (qbox,) = scene([(world.cards[1], 90, 30, 1.3)])
    t9 = {"id": 9, "project": PID, "data": {"image": world.images.put("/data/upload/3/q.png", q)}}
    drawn = {"result": [{"id": "u1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                         "value": {**xyxy_to_ls(qbox, *q.size), "rectanglelabels": ["Card"]}}]}
    r = app.post("/predict", json={"tasks": [t9], "project": f"{PID}.1700000000", "label_config": CONFIG_TEXTAREA,
                                   "params": {"context": drawn}})
    assert r.status_code == 200, r.json
    (pred,) = r.json["results"]
    assert_valid_prediction(LabelInterface(config=CONFIG_TEXTAREA), pred["result"], pred["score"])
    assert r.json["model_version"] == "identify-v1" and pred["model_version"] == "identify-v1"
    rect, text = pred["result"]
    assert rect["type"] == "rectanglelabels" and rect["value"]["rectanglelabels"] == ["Card"]
    assert text["type"] == "textarea" and text["value"]["text"] == ["Pot Of Greed"] and text["id"] == rect["id"]
    assert 0.9 < text["score"] <= 1.0

    # a config whose RectangleLabels has the names: the rectangle gets the identity (case-insensitive map)
    body2 = webhook("ANNOTATION_CREATED", PID, world.t2, world.ann2)
    assert hook(body2)["index_version"] == 2
    q2, (box2,) = scene([(world.cards[2], 40, 20, 1.1)])
    t10 = {"id": 10, "project": PID, "data": {"photo": "/data/upload/3/q2.png", "image": world.images.put(
        "/data/upload/3/q2.png", q2)}}
    drawn2 = {"result": [{"type": "rectanglelabels", "value": {**xyxy_to_ls(box2, *q2.size),
                                                               "rectanglelabels": ["Card"]}}]}
    r = app.post("/predict", json={"tasks": [t10], "project": str(PID), "label_config": CONFIG_LABELS,
                                   "params": {"context": drawn2}})
    (pred,) = r.json["results"]
    assert_valid_prediction(LabelInterface(config=CONFIG_LABELS), pred["result"], pred["score"])
    assert [x["value"]["rectanglelabels"] for x in pred["result"]] == [["Mirror Force"]]
    assert r.json["model_version"] == "identify-v2"

    # interactive: Label Studio sends every connected region (predicted ones and earlier drawings too);
    # only the one just drawn (the last that is not a prediction) is answered, and a context of predicted
    # regions only gets no suggestion
    q3, (box_a, box_b) = scene([(world.cards[1], 20, 20, 1.0), (world.cards[2], 150, 40, 1.0)])
    t12 = {"id": 12, "project": PID, "data": {"image": world.images.put("/data/upload/3/q3.png", q3)}}

    def region(rid, box, origin):
        return {"id": rid, "type": "rectanglelabels", "from_name": "box", "to_name": "img", "origin": origin,
                "value": {**xyxy_to_ls(box, *q3.size), "rectanglelabels": ["Card"]}}

    context = {"result": [region("p1", box_b, "prediction"), region("m1", box_b, "manual"),
                          region("m2", box_a, "manual"), region("p2", box_a, "prediction-changed")]}
    r = app.post("/predict", json={"tasks": [t12], "project": str(PID), "label_config": CONFIG_LABELS,
                                   "params": {"context": context}})
    (pred,) = r.json["results"]
    assert_valid_prediction(LabelInterface(config=CONFIG_LABELS), pred["result"], pred["score"])
    assert len(pred["result"]) == 1, pred["result"]
    assert pred["result"][0]["value"]["x"] == pytest.approx(xyxy_to_ls(box_a, *q3.size)["x"])
    only_predicted = {"result": [region("p1", box_b, "prediction"), region("p2", box_a, "prediction-changed")]}
    r = app.post("/predict", json={"tasks": [t12], "project": str(PID), "label_config": CONFIG_LABELS,
                                   "params": {"context": only_predicted}})
    assert r.status_code == 200 and r.json["results"] == [[]] and not r.json.get("errors")

    # a task whose image is gone: an error entry, not a crash
    gone = {"id": 11, "project": PID, "data": {"image": "/data/upload/3/gone.png"}}
    r = app.post("/predict", json={"tasks": [gone], "project": str(PID), "label_config": CONFIG_TEXTAREA})
    assert r.status_code == 200 and r.json["results"] == [[]] and "image unavailable" in r.json["errors"][0]["reason"]
    svc.stop()


# -- concurrency ---------------------------------------------------------------------------------
def test_concurrent_predict_and_fit(world, clip_embedder):
    """Readers identify while writers add/replace/delete annotations: every search sees a whole snapshot."""
    store = world.indexes.get(PID)
    _fit(world, "ANNOTATION_CREATED", world.t1, world.ann1, clip_embedder)
    ident = Identifier(store, clip_embedder, min_cosine=0.0, min_margin=0.0)
    q, (qbox,) = scene([(world.cards[1], 90, 30, 1.3)])
    errors, versions = [], []
    stop = threading.Event()

    def reader():
        seen = []
        try:
            while not stop.is_set():
                snap = store.current()
                assert len(snap.entries) == len(snap.vectors) == len(snap.labels)
                (m,), v = ident.identify_boxes(q, [qbox])
                assert m.best_label == "Pot Of Greed", m.best_label  # annotation 11 is never removed
                seen.append(v)
            assert seen == sorted(seen), "a reader went back to an older index"
            versions.extend(seen)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def writer(k):
        try:
            for i in range(12):
                aid = 500 + 10 * k + i // 4  # saved four times, then deleted (a deleted id is never used again)
                img = world.cards[2 + (i % 2)]
                tk = {"id": 50 + k, "project": PID, "data": {"image": world.images.put(f"/w{k}{i}.png", img)}}
                ann = {"id": aid, "updated_at": f"2026-01-01T00:00:{i:02d}Z",
                       "result": [ls_rect([0, 0, 96, 136], 96, 136, f"W{k}-{i}", "r")]}
                assert _fit(world, "ANNOTATION_UPDATED", tk, ann, clip_embedder)["status"] == "ok"
                if i % 4 == 3:
                    assert fit("ANNOTATION_DELETED", {"project": {"id": PID}, "annotation": {"id": aid}},
                               world.indexes, world.images, clip_embedder)["status"] == "ok"
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    for t in readers:
        t.join(10)
    assert not errors, errors[:3]
    final = store.current()
    assert final.version == 1 + 3 * 12 + 3 * 3  # every write landed, none lost
    assert len(set(versions)) > 1  # readers ran while the index changed
    assert IndexSnapshot.load(store.path).version == final.version
