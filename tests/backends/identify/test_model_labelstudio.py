"""End to end against a real Label Studio: an annotation saved through its API reaches the backend's
/webhook (the webhook Label Studio creates when an ML backend is connected), and a later interactive
prediction on a new task showing a shifted, rescaled copy names the annotated object; deleting the
annotation removes its vectors. Run against the stand-alone IdentifyModel and against AutoLabelModel
with stages.identify on (one Label Studio connection for the cascade and the index). And an
annotation saved while the backend was down reaches the index through the catch-up."""
import copy
import threading
import time

import pytest
import requests

from pipeline.labelstudio.coords import xyxy_to_rect as xyxy_to_ls
from pipeline.stack.processes import free_port
from tests.doubles.images import card, png, scene

pytestmark = pytest.mark.slow

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="Card"/></RectangleLabels>
  <TextArea name="name" toName="image" perRegion="true" editable="true"/>
</View>"""





def _autolabel_model(tmp_path, monkeypatch):
    """AutoLabelModel with stages.identify on: the same URL grounds, verifies and identifies
    (providers with known answers: this test is about the index, not the cascade)."""
    import yaml

    from backends.autolabel.model import AutoLabelModel
    from pipeline.cascade import Pipeline
    from pipeline.predict import runner
    from tests.doubles.providers import KnownGrounder, KnownVLM

    path = tmp_path / "cards.yaml"
    path.write_text(yaml.safe_dump({
        "project_name": "cards", "target_object": "card", "label": "Card", "falcon_queries": ["card"],
        "stages": {"filter": True, "ground": True, "verify": True, "identify": True},
        "thresholds": {"filter": 0.5, "grounding": 0.1, "verify": 0.5},
        "providers": {"identify": {"min_cosine": 0.0, "min_margin": 0.0}}}))
    monkeypatch.setenv("PROJECT_CONFIG", str(path))
    monkeypatch.setattr(runner, "PIPELINE_FACTORY",
                        lambda cfg: Pipeline(cfg, vlm=KnownVLM(0.9), grounder=KnownGrounder({})))
    runner.pipelines.clear()
    return AutoLabelModel


class Served:
    """A backend app on 127.0.0.1:port in a thread, with its own identify service (one 'process')."""

    def __init__(self, model_class, port, label_studio, clip_embedder, model_dir, monkeypatch):
        from werkzeug.serving import make_server

        from backends.base import init_app
        from pipeline.config import IdentifyProvider
        from pipeline.references import service as idservice

        monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
        monkeypatch.setenv("MODEL_DIR", str(model_dir))  # the per-project cache.db too
        self.service = idservice.IdentifyService(IdentifyProvider(min_cosine=0.0, min_margin=0.0), model_dir=model_dir,
                                               embedder=clip_embedder)
        monkeypatch.setattr(idservice, "service", lambda: self.service)
        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, init_app(model_class), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        self.service.stop()


@pytest.fixture(params=["identify", "autolabel"])
def identify_backend(request, label_studio, clip_embedder, tmp_path, monkeypatch):
    """The stand-alone IdentifyModel, or the auto-label backend with its identify stage on."""
    from backends.identify import model as idmodel

    model_class = idmodel.IdentifyModel if request.param == "identify" else _autolabel_model(tmp_path, monkeypatch)
    backend = Served(model_class, free_port(), label_studio, clip_embedder, tmp_path / "models", monkeypatch)
    try:
        yield backend
    finally:
        backend.stop()


def test_annotation_webhook_then_prediction(label_studio, identify_backend):
    ls = label_studio.client()
    project = ls.projects.create(title="identify e2e", label_config=CONFIG)
    cards = [card(200 + i) for i in range(3)]
    img1, boxes = scene([(cards[0], 10, 20, 1.0), (cards[1], 150, 60, 1.1), (cards[2], 230, 5, 0.6)])
    img2, (qbox,) = scene([(cards[1], 70, 40, 1.35)], size=(300, 280), background=(90, 90, 90))
    files = [("f1", ("shelf.png", png(img1), "image/png")), ("f2", ("new.png", png(img2), "image/png"))]
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                      headers=label_studio.headers(), timeout=60)
    assert r.status_code == 201, r.text
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    t1, t2 = tasks

    ml = ls.ml.create(project=project.id, url=identify_backend.url, title="identify", is_interactive=True)
    ml = ls.ml.get(ml.id)
    assert ml.state == "CO", (ml.state, ml.error_message)
    assert ml.model_version == "identify-v0" or ml.model_version.endswith("+identify-v0")  # autolabel: base+

    w, h = img1.size
    result = []
    for i, (box, name) in enumerate(zip(boxes, ["Dark Magician", "Pot Of Greed", "Mirror Force"])):
        value = xyxy_to_ls(box, w, h)
        common = {"id": f"r{i}", "to_name": "image", "original_width": w, "original_height": h}
        result.append({**common, "from_name": "label", "type": "rectanglelabels",
                       "value": {**value, "rectanglelabels": ["Card"]}})
        result.append({**common, "from_name": "name", "type": "textarea", "value": {**value, "text": [name]}})
    ann = ls.annotations.create(id=t1.id, result=result)

    store = identify_backend.service.indexes.get(project.id)
    deadline = time.monotonic() + 60
    while store.current().version < 1:
        assert time.monotonic() < deadline, f"no webhook reached the backend:\n{label_studio.log_tail()}"
        time.sleep(0.25)
    snap = store.current()
    assert sorted(snap.labels) == ["Dark Magician", "Mirror Force", "Pot Of Greed"]
    assert {e["source"]["annotation"] for e in snap.entries} == {ann.id}

    # a person draws a box on the new task: the backend names it
    w2, h2 = img2.size
    drawn = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": w2,
             "original_height": h2, "value": {**xyxy_to_ls(qbox, w2, h2), "rectanglelabels": ["Card"]}}
    r = requests.post(f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating", headers=label_studio.headers(),
                      json={"task": t2.id, "context": {"result": [drawn]}}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["model_version"] == "identify-v1" or data["model_version"].endswith("+identify-v1")
    names = [x["value"]["text"] for x in data["result"] if x["type"] == "textarea"]
    assert names == [["Pot Of Greed"]], data["result"]

    # deleting the annotation in Label Studio removes its vectors (ANNOTATIONS_DELETED)
    ls.annotations.delete(id=ann.id)
    deadline = time.monotonic() + 30
    while len(store.current()) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert len(store.current()) == 0, f"ANNOTATIONS_DELETED did not reach fit():\n{label_studio.log_tail()}"
    assert store.current().version == 2


def _wait_for(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def test_catch_up_finds_an_annotation_saved_while_the_backend_was_down(label_studio, clip_embedder, tmp_path,
                                                                      monkeypatch):
    from backends.identify import model as idmodel
    from pipeline.references import journal

    monkeypatch.setattr(journal, "CATCHUP_MIN_GAP", 0.0)  # the restart comes seconds after the last check
    ls = label_studio.client()
    project = ls.projects.create(title="identify catch-up", label_config=CONFIG)
    img, boxes = scene([(card(300), 10, 20, 1.0)])
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", headers=label_studio.headers(),
                      files=[("f1", ("shelf.png", png(img), "image/png"))], timeout=60)
    assert r.status_code == 201, r.text
    (task,) = ls.tasks.list(project=project.id)
    port, model_dir = free_port(), tmp_path / "models"

    backend = Served(idmodel.IdentifyModel, port, label_studio, clip_embedder, model_dir, monkeypatch)
    try:
        ls.ml.create(project=project.id, url=backend.url, title="identify", is_interactive=True)  # /setup
        first = _wait_for("no catch-up after /setup", lambda: backend.service.metrics()["projects"].get(
            str(project.id), {}).get("last_check"))
        assert first["status"] == "ok" and first["ls_annotations"] == 0
    finally:
        backend.stop()  # the backend is down: Label Studio's webhook for the next annotation is lost

    w, h = img.size
    value = xyxy_to_ls(boxes[0], w, h)
    common = {"id": "r0", "to_name": "image", "original_width": w, "original_height": h}
    ann = ls.annotations.create(id=task.id, result=[
        {**common, "from_name": "label", "type": "rectanglelabels", "value": {**value, "rectanglelabels": ["Card"]}},
        {**common, "from_name": "name", "type": "textarea", "value": {**value, "text": ["Dark Magician"]}}])

    backend = Served(idmodel.IdentifyModel, port, label_studio, clip_embedder, model_dir, monkeypatch)  # restart
    try:
        store = backend.service.indexes.get(project.id)
        assert len(store.current()) == 0  # no webhook ever reached a backend
        idmodel.IdentifyModel.warm_up()  # gunicorn's post_worker_init: starts the journal's applier
        _wait_for(f"the catch-up did not index annotation {ann.id}:\n{label_studio.log_tail()}",
                  lambda: store.current().label_set() == ["Dark Magician"])
        assert {e["source"]["annotation"] for e in store.current().entries} == {ann.id}
        report = _wait_for("no catch-up report", lambda: backend.service.metrics()["projects"][str(project.id)].get(
            "last_check"))
        assert report["not_in_index"] == 1 and report["journalled"] == 1
        # the index is written before the journal marks its entry applied: wait for that too
        metrics = _wait_for("the catch-up's journal entry was not marked applied", lambda: (
            m := requests.get(backend.url + "/metrics", timeout=10).json()["identify"])["backlog"] == 0 and m)
        assert metrics["last_applied"]["source"] == "catch-up"
    finally:
        backend.stop()


def test_a_late_or_repeated_webhook_changes_nothing(label_studio, clip_embedder, tmp_path, monkeypatch):
    """Create, update, delete an annotation in Label Studio; copies of the ANNOTATION_UPDATED it sent
    (exactly as sent) arrive again: while it exists they change nothing, not even model_version; after
    its delete one late copy does not bring its vectors back (Label Studio answers 404 for it), also
    after a restart of the backend."""
    from backends.identify import model as idmodel

    ls = label_studio.client()
    project = ls.projects.create(title="identify late webhooks", label_config=CONFIG)
    img, boxes = scene([(card(310), 10, 20, 1.0), (card(311), 150, 60, 1.1)])
    r = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", headers=label_studio.headers(),
                      files=[("f1", ("shelf.png", png(img), "image/png"))], timeout=60)
    assert r.status_code == 201, r.text
    (task,) = ls.tasks.list(project=project.id)
    port, model_dir = free_port(), tmp_path / "models"
    w, h = img.size

    def regions(names):
        out = []
        for i, (box, name) in enumerate(zip(boxes, names)):
            value = xyxy_to_ls(box, w, h)
            common = {"id": f"r{i}", "to_name": "image", "original_width": w, "original_height": h}
            out += [{**common, "from_name": "label", "type": "rectanglelabels",
                     "value": {**value, "rectanglelabels": ["Card"]}},
                    {**common, "from_name": "name", "type": "textarea", "value": {**value, "text": [name]}}]
        return out

    backend = Served(idmodel.IdentifyModel, port, label_studio, clip_embedder, model_dir, monkeypatch)
    received = []  # (event, body) as /webhook handed them to the service
    service_fit = backend.service.fit
    monkeypatch.setattr(backend.service, "fit", lambda event, data, data_key=None: (
        received.append((event, copy.deepcopy(data))), service_fit(event, data, data_key))[1])

    def post(event, data):
        r = requests.post(backend.url + "/webhook", json={"action": event, **data}, timeout=10)
        assert r.status_code == 201, r.text
        done = backend.service.journal.wait(r.json()["result"]["journal_id"], 60)
        assert done and done["result"]["status"] == "ok", done
        return done["result"]

    def model_version():
        r = requests.post(backend.url + "/setup", json={"project": f"{project.id}.1", "schema": CONFIG}, timeout=30)
        return r.json()["model_version"]

    try:
        ls.ml.create(project=project.id, url=backend.url, title="identify", is_interactive=True)
        store = backend.service.indexes.get(project.id)
        ann = ls.annotations.create(id=task.id, result=regions(["Dark Magician", "Pot Of Greed"]))
        _wait_for(f"ANNOTATION_CREATED did not reach the index:\n{label_studio.log_tail()}",
                  lambda: store.current().label_set() == ["Dark Magician", "Pot Of Greed"])
        ls.annotations.update(id=ann.id, result=regions(["Dark Magician", "Mirror Force"]))
        _wait_for(f"ANNOTATION_UPDATED did not reach the index:\n{label_studio.log_tail()}",
                  lambda: store.current().label_set() == ["Dark Magician", "Mirror Force"])
        (update,) = [d for e, d in received if e == "ANNOTATION_UPDATED"]
        # what Label Studio 1.23 sends: the whole annotation (updated_at, created_at), the task, the project
        assert update["annotation"]["id"] == ann.id and update["annotation"]["updated_at"]
        assert update["annotation"]["created_at"] and update["task"]["id"] == task.id
        version, model = store.current().version, model_version()
        assert model == f"identify-v{version}"

        for _ in range(4):  # four copies of the same webhook
            res = post("ANNOTATION_UPDATED", update)
            assert res["vectors_added"] == 0 and res["index_version"] == version, res
        assert store.current().version == version and model_version() == model

        ls.annotations.delete(id=ann.id)
        _wait_for(f"ANNOTATIONS_DELETED did not reach the index:\n{label_studio.log_tail()}",
                  lambda: len(store.current()) == 0)
        (delete,) = [d for e, d in received if e == "ANNOTATIONS_DELETED"]
        assert delete["annotations"] == [{"id": ann.id}]  # ids only: no updated_at to order it by
        version = store.current().version
        gone = requests.get(f"{label_studio.url}/api/annotations/{ann.id}", headers=label_studio.headers(),
                            timeout=30)
        assert gone.status_code == 404

        res = post("ANNOTATION_UPDATED", update)  # the late copy
        assert res["vectors_added"] == 0 and "deleted" in res["note"], res
        assert len(store.current()) == 0 and store.current().version == version
    finally:
        backend.stop()

    backend = Served(idmodel.IdentifyModel, port, label_studio, clip_embedder, model_dir, monkeypatch)  # restart
    try:
        store = backend.service.indexes.get(project.id)
        res = post("ANNOTATION_UPDATED", update)
        assert res["vectors_added"] == 0 and len(store.current()) == 0 and store.current().version == version
        assert model_version() == f"identify-v{version}"
    finally:
        backend.stop()
