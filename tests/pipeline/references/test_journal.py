"""The webhook journal (pipeline/references/journal.py): a webhook answered at once while the fit is
slow, an entry acknowledged before a kill -9 applied by the next process, several worker processes
never applying one entry twice, and the catch-up with Label Studio's annotations (+ /metrics)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from backends.base import init_app
from backends.identify import model as idmodel
from pipeline.references import service as idservice
from pipeline.references.journal import Journal
from pipeline.references.ledger import applied
from pipeline.stack.processes import free_port
from tests import REPO
from tests.doubles.images import card
from tests.doubles.label_studio import page_of, webhook
from tests.doubles.providers import HashEmbedder
from tests.doubles.regions import ls_rect

PID = 3
IMAGES = {f"/data/upload/3/t{i}.png": card(400 + i) for i in range(1, 6)}


def fetch(task):
    url = task["data"]["image"]
    if url not in IMAGES:
        raise FileNotFoundError(f"{url}: 404 Not Found")
    return IMAGES[url]


def task(i: int) -> dict:
    return {"id": i, "project": PID, "data": {"image": f"/data/upload/3/t{i}.png"}}


def annotation(aid: int, label: str, updated: str = "2026-01-01T00:00:00Z", **extra) -> dict:
    return {"id": aid, "updated_at": updated, "was_cancelled": False,
            "result": [ls_rect([0, 0, 96, 136], 96, 136, label, f"r{aid}")], **extra}


@pytest.fixture
def service(tmp_path, monkeypatch):
    """make(**kw) -> an IdentifyService on tmp_path (the process service), stopped after the test."""
    made = []

    def make(**kw):
        kw = {"model_dir": tmp_path / "models", "embedder": HashEmbedder(), "image_fetcher": fetch,
              "client_factory": lambda: None, **kw}
        svc = idservice.IdentifyService(**kw)
        made.append(svc)
        monkeypatch.setattr(idservice, "service", lambda: svc)
        return svc
    yield make
    for svc in made:
        svc.stop()


def test_webhook_is_answered_at_once_while_the_fit_is_slow(service):
    svc = service(embedder=HashEmbedder(delay=3.0))  # embedding one annotation takes 3 s
    app = init_app(idmodel.IdentifyModel).test_client()
    t0 = time.monotonic()
    r = app.post("/webhook", json=webhook("ANNOTATION_CREATED", PID, task(1), annotation(11, "Dark Magician")))
    ack = time.monotonic() - t0
    assert r.status_code == 201, r.json
    res = r.json["result"]
    assert res["status"] == "queued" and res["project"] == "3"
    assert ack < 1.0, f"Label Studio waits 1 s for the answer; it took {ack:.2f} s"
    assert svc.journal.get(res["journal_id"])["state"] in ("pending", "applying")
    metrics = app.get("/metrics").json["identify"]
    assert metrics["backlog"] == 1 and metrics["projects"]["3"]["backlog"] == 1

    done = svc.journal.wait(res["journal_id"], 60)
    assert done and done["result"]["status"] == "ok" and done["result"]["vectors_added"] == 1
    assert svc.indexes.get(PID).current().label_set() == ["Dark Magician"]
    metrics = app.get("/metrics").json["identify"]
    assert metrics["backlog"] == 0 and metrics["oldest_pending_seconds"] is None
    assert metrics["last_applied"]["event"] == "ANNOTATION_CREATED" and metrics["last_applied"]["lag_seconds"] >= 3
    assert metrics["projects"]["3"]["index_version"] == 1 and metrics["projects"]["3"]["annotations_applied"] == 1


CHILD = textwrap.dedent("""
    import sys, time
    from werkzeug.serving import make_server
    from backends.base import init_app
    from backends.identify import model as idmodel
    from pipeline.references import service as idservice
    from tests.doubles.providers import HashEmbedder
    from tests.pipeline.references.test_journal import fetch

    class Stuck(HashEmbedder):  # the fit never finishes: the process is killed while applying
        def embed(self, images):
            print("embedding", flush=True)
            time.sleep(600)

    idservice.set_service(idservice.IdentifyService(model_dir=sys.argv[1], embedder=Stuck(), image_fetcher=fetch,
                                                client_factory=lambda: None))
    server = make_server("127.0.0.1", int(sys.argv[2]), init_app(idmodel.IdentifyModel))
    print("ready", flush=True)
    server.serve_forever()
""")


def test_entry_acknowledged_before_a_kill_9_is_applied_after_restart(service, tmp_path):
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "models"), str(port)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "ready"
        r = requests.post(f"http://127.0.0.1:{port}/webhook", timeout=10,
                          json=webhook("ANNOTATION_CREATED", PID, task(2), annotation(12, "Pot Of Greed")))
        assert r.status_code == 201 and r.json()["result"]["status"] == "queued"
        entry_id = r.json()["result"]["journal_id"]
        assert child.stdout.readline().strip() == "embedding"  # acknowledged, claimed, not yet applied
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    journal = Journal(tmp_path / "models" / "identify" / "journal.db")
    assert journal.get(entry_id)["state"] == "applying"  # its applier is dead

    svc = service()  # the restarted worker (e.g. gunicorn's respawn), same MODEL_DIR
    assert svc.indexes.get(PID).current().version == 0
    svc.start()
    done = svc.journal.wait(entry_id, 60)
    assert done and done["result"]["status"] == "ok" and done["attempts"] == 2
    snap = svc.indexes.get(PID).current()
    assert snap.label_set() == ["Pot Of Greed"] and applied(snap)["12"][1] == 1


WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pipeline.references.journal import Journal
    j, idle = Journal(sys.argv[1]), 0
    while idle < 20:
        e = j.claim()
        if e is None:
            idle += 1
            time.sleep(0.02)
            continue
        idle = 0
        time.sleep(0.005)
        j.finish(e.id, {"status": "ok", "by": os.getpid(), "n": e.data["n"]})
""")


def test_worker_processes_apply_each_entry_once_and_in_order(tmp_path):
    path = tmp_path / "journal.db"
    journal = Journal(path)
    ids = [journal.append(str(n % 3), "ANNOTATION_UPDATED", {"n": n}) for n in range(90)]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(path)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(3)]
    for w in workers:
        assert w.wait(120) == 0
    rows = [journal.get(i) for i in ids]
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in rows)  # each claimed exactly once
    assert len({r["result"]["by"] for r in rows}) > 1  # the workers shared the work
    for project in "012":  # a project's entries were applied in arrival order
        mine = [r for r in rows if r["project"] == project]
        assert [r["id"] for r in sorted(mine, key=lambda r: r["applied"])] == [r["id"] for r in mine]


class FakeLabelStudio:
    """label-studio-sdk's surface the catch-up uses: tasks.list(project, fields) with annotations."""

    def __init__(self, tasks):
        outer = self
        self.task_list = tasks

        class Tasks:
            def list(self, project, fields=None, page=1, page_size=100, **kw):  # a page past the last: 404
                assert fields == "all"
                return page_of([t for t in outer.task_list if t["project"] == project], page, page_size)

        self.tasks = Tasks()


def test_catch_up_journals_what_label_studio_has_and_the_index_lacks(service):
    ls = FakeLabelStudio([])
    svc = service(client_factory=lambda: ls)
    # what the backend heard: annotations 11 and 13, and a cancelled 15
    for t, ann in ((task(1), annotation(11, "Dark Magician")), (task(3), annotation(13, "Mirror Force")),
                   (task(5), annotation(15, "Skipped", was_cancelled=True))):
        assert svc.apply("ANNOTATION_CREATED", webhook("ANNOTATION_CREATED", PID, t, ann))["status"] == "ok"
    # what Label Studio has now: 11 renamed later, 12 never heard of, 14 created then deleted while listed;
    # 13 deleted while the backend was down; 15 unchanged
    ls.task_list = [{**task(1), "annotations": [annotation(11, "Dark Magician Girl", "2026-01-02T00:00:00Z")]},
                    {**task(2), "annotations": [annotation(12, "Pot Of Greed")]},
                    {**task(4), "annotations": [annotation(14, "Raigeki")]},
                    {**task(5), "annotations": [annotation(15, "Skipped", was_cancelled=True)]}]
    report = svc.catch_up(PID, "image")
    assert report["status"] == "ok" and report["ls_annotations"] == 4
    assert (report["not_in_index"], report["outdated_in_index"], report["deleted_in_ls"]) == (2, 1, 1)
    assert report["journalled"] == 4 and svc.journal.open_entries(str(PID)) == 4
    # the delete of 14 reaches the index before the catch-up's entries are applied: it stands
    assert svc.apply("ANNOTATIONS_DELETED", {"project": {"id": PID}, "annotations": [{"id": 14}]})["status"] == "ok"

    svc.start()
    deadline = time.monotonic() + 60
    while svc.journal.open_entries():
        assert time.monotonic() < deadline, "the catch-up's entries were not applied"
        time.sleep(0.05)
    snap = svc.indexes.get(PID).current()
    assert snap.label_set() == ["Dark Magician Girl", "Pot Of Greed"]
    assert sorted(applied(snap)) == ["11", "12", "15"]
    assert svc.catch_up(PID, "image")["journalled"] == 0  # nothing left to catch up on


def test_catch_up_far_behind_rebuilds_once(service, monkeypatch):
    from pipeline.references import journal as jmod

    monkeypatch.setattr(jmod, "CATCHUP_REBUILD_ABOVE", 2)
    ls = FakeLabelStudio([{**task(i), "annotations": [annotation(10 + i, f"Card {i}")]} for i in (1, 2, 3)])
    ls.projects = type("Projects", (), {"get": staticmethod(lambda id: {"id": id})})()
    svc = service(client_factory=lambda: ls)
    report = svc.catch_up(PID, "image")
    assert report["not_in_index"] == 3 and report["rebuild"] and report["journalled"] == 1
    entry = svc.journal.claim()
    assert entry.event == "START_TRAINING" and entry.source == "catch-up"
    svc.journal.release(entry.id)
    svc.start()
    deadline = time.monotonic() + 60
    while svc.journal.open_entries():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    snap = svc.indexes.get(PID).current()
    assert snap.version == 1 and snap.label_set() == ["Card 1", "Card 2", "Card 3"]
    assert sorted(applied(snap)) == ["11", "12", "13"]


def test_scheduled_catch_up_shows_in_metrics(service, monkeypatch):
    ls = FakeLabelStudio([{**task(1), "annotations": [annotation(11, "Dark Magician")]}])
    svc = service(client_factory=lambda: ls)
    app = init_app(idmodel.IdentifyModel).test_client()
    config = '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">' \
             '<Label value="Card"/></RectangleLabels></View>'
    assert app.post("/setup", json={"project": f"{PID}.1", "schema": config}).status_code == 200  # first sight
    deadline = time.monotonic() + 60
    while True:
        p = app.get("/metrics").json["identify"]["projects"].get("3") or {}
        if p.get("last_check") and p["backlog"] == 0 and p["index_version"] == 1:
            break
        assert time.monotonic() < deadline, p
        time.sleep(0.05)
    assert p["last_check"]["not_in_index"] == 1 and p["last_check"]["journalled"] == 1
    assert svc.indexes.get(PID).current().label_set() == ["Dark Magician"]

    # Label Studio unreachable: the report says so, nothing is journalled
    svc2 = service(client_factory=lambda: None)
    assert svc2.catch_up(PID)["status"] == "error"


def test_an_entry_that_keeps_failing_is_given_up(tmp_path, monkeypatch):
    from pipeline.references import journal as jmod

    journal = Journal(tmp_path / "j.db")
    entry_id = journal.append("3", "ANNOTATION_CREATED", {"n": 1})
    calls = []

    def apply(entry):
        calls.append(entry.attempts)
        raise OSError("disk full (pretend)")

    applier = jmod.Applier(journal, apply, interval=0)
    while applier.step():
        pass
    row = journal.get(entry_id)
    assert calls == list(range(1, jmod.MAX_ATTEMPTS + 1))
    assert row["state"] == "done" and row["status"] == "error" and "disk full" in row["result"]["reason"]
    assert journal.stats()["failed"] == 1 and journal.open_entries() == 0


def test_an_appended_entry_is_visible_to_another_connection(tmp_path):
    """An appended entry is on disk for another connection at once (what the 2xx answer promises)."""
    a = Journal(tmp_path / "j.db")
    entry_id = a.append("3", "ANNOTATION_CREATED", {"x": [1, 2]})
    b = Journal(tmp_path / "j.db")
    assert b.get(entry_id)["state"] == "pending" and b.claim().data == {"x": [1, 2]}
