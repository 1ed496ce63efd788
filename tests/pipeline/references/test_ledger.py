"""Late and repeated events (pipeline/references/ledger.py through fit() and the journal): a delete's tombstone
stands against every later event of that annotation, across restarts, unless the id was given to an
annotation created later; an event identical to what the index applied writes nothing (same index version,
same model_version); the catch-up still reconciles, and a rebuild lifts the tombstone of an annotation
Label Studio has again."""
import numpy as np
import pytest

from backends.identify import model as idmodel
from pipeline.identify.index import make_entry
from pipeline.references import ledger
from pipeline.references import service as idservice
from pipeline.references.fit import ProjectIndexes, fit
from pipeline.references.journal import compare
from tests.doubles.images import card
from tests.doubles.label_studio import page_of, webhook
from tests.doubles.providers import HashEmbedder
from tests.doubles.regions import ls_rect

PID = 3
CREATED = "2026-01-01T00:00:00.100000Z"


class Fetch:
    """Task images by URL, counting downloads (an event left out must not fetch or embed)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, task):
        self.calls += 1
        return card(int(task["data"]["image"].rsplit("/t", 1)[1].split(".")[0]))


def task(i: int) -> dict:
    return {"id": i, "project": PID, "data": {"image": f"/data/upload/3/t{i}.png"}}


def annotation(aid, labels, updated, created=CREATED, **extra) -> dict:
    """Two regions (like an annotation with two named boxes), saved at ``updated``."""
    result = [ls_rect([0, 0, 48, 68], 96, 136, labels[0], f"a{aid}"),
              ls_rect([48, 68, 96, 136], 96, 136, labels[1], f"b{aid}")]
    return {"id": aid, "created_at": created, "updated_at": updated, "result": result, **extra}


def body(action, t, ann) -> dict:
    b = webhook(action, PID, t, ann)
    b.pop("action")
    return b


def deleted(*ids) -> dict:
    """Label Studio 1.23's ANNOTATIONS_DELETED body: ids only (OnlyIDWebhookSerializer)."""
    return {"project": {"id": PID, "title": "cards"}, "annotations": [{"id": i} for i in ids]}


@pytest.fixture
def world(tmp_path):
    fetch, emb = Fetch(), HashEmbedder()
    w = type("World", (), {})()
    w.dir, w.fetch, w.emb = tmp_path / "models", fetch, emb
    w.indexes = ProjectIndexes(w.dir)
    w.fit = lambda event, data: fit(event, data, w.indexes, fetch, emb)
    w.snap = lambda: w.indexes.get(PID).current()
    return w


V1, V2 = "2026-01-01T00:00:01.000001Z", "2026-01-01T00:00:02.000002Z"


def test_a_late_update_after_the_delete_is_left_out_even_after_a_restart(world):
    t, v1, v2 = task(1), annotation(11, ["A", "B"], V1), annotation(11, ["A", "C"], V2)
    assert world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t, v1))["index_version"] == 1
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, v2))["vectors_added"] == 2
    res = world.fit("ANNOTATIONS_DELETED", deleted(11))
    assert res["status"] == "ok" and res["vectors"] == 0 and res["index_version"] == 3
    fetched = world.fetch.calls

    late = world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, v2))  # one late copy of the update
    assert late["status"] == "ok" and late["vectors_added"] == 0 and "deleted" in late["note"]
    assert len(world.snap()) == 0 and world.snap().version == 3
    assert world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t, v1))["vectors_added"] == 0  # older too
    assert world.fetch.calls == fetched  # nothing downloaded or embedded for them

    # the tombstone is in the index file: a restarted process (fresh stores) still respects it
    world.indexes = ProjectIndexes(world.dir)
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, v2))["vectors_added"] == 0
    snap = world.snap()
    assert len(snap) == 0 and snap.version == 3 and "11" not in ledger.applied(snap)
    assert list(ledger.tombstones(snap)) == ["11"]


def test_a_delete_that_arrives_before_the_create_stands(world):
    """The tombstone of an annotation the index never saw has no created_at: it stands against all its events."""
    assert world.fit("ANNOTATIONS_DELETED", deleted(12))["index_version"] == 1
    late = world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", task(2), annotation(12, ["A", "B"], V1)))
    assert late["vectors_added"] == 0 and len(world.snap()) == 0 and world.snap().version == 1


def test_identical_events_change_nothing_version_included(world):
    t, v1 = task(1), annotation(11, ["A", "B"], V1)
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, v1))["index_version"] == 1
    path, fetched = world.indexes.get(PID).path, world.fetch.calls
    written = path.stat().st_mtime_ns
    for _ in range(4):  # four copies of the same webhook
        res = world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, v1))
        assert res["status"] == "ok" and res["vectors_added"] == 0 and res["index_version"] == 1
        assert "already in the index" in res["note"]
    assert world.snap().version == 1 and world.fetch.calls == fetched
    assert path.stat().st_mtime_ns == written  # the index file was not even rewritten
    assert idmodel.model_version_for(world.snap().version) == "identify-v1"

    # a repeated delete, and a delete of an id already deleted within a batch, write nothing either
    assert world.fit("ANNOTATIONS_DELETED", deleted(11))["index_version"] == 2
    for _ in range(3):
        res = world.fit("ANNOTATIONS_DELETED", deleted(11))
        assert res["status"] == "ok" and res["index_version"] == 2 and "deleted already" in res["note"]
    assert world.fit("ANNOTATIONS_DELETED", deleted(11, 13))["index_version"] == 3  # 13 is new: a tombstone
    assert sorted(ledger.tombstones(world.snap())) == ["11", "13"]


def test_same_updated_at_with_other_content_is_applied(world):
    """Only an identical event is left out: Label Studio can change a result without a new updated_at
    (renaming a label rewrites results with bulk_update), so the same updated_at with other regions is applied."""
    t = task(1)
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, annotation(11, ["A", "B"], V1)))
    res = world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, annotation(11, ["A", "Renamed"], V1)))
    assert res["vectors_added"] == 2 and res["index_version"] == 2
    assert world.snap().label_set() == ["A", "Renamed"]
    older = world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, annotation(11, ["Old", "B"],
                                                                                     "2026-01-01T00:00:00.5Z")))
    assert older["vectors_added"] == 0 and "newer version" in older["note"] and world.snap().version == 2
    cancelled = annotation(11, ["A", "Renamed"], V1, was_cancelled=True)  # same result, now skipped: other content
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, cancelled))["index_version"] == 3
    assert len(world.snap()) == 0


def test_an_id_given_to_a_later_annotation_lifts_the_tombstone(world):
    """A Label Studio database started afresh gives ids again: an annotation created after the deleted one
    is another annotation; the deleted one's own late events still stay out."""
    t, old = task(1), annotation(11, ["A", "B"], V1)
    world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t, old))
    world.fit("ANNOTATIONS_DELETED", deleted(11))
    assert ledger.tombstones(world.snap())["11"].created == ledger.epoch(CREATED)
    again = annotation(11, ["New", "Other"], "2027-03-01T00:00:00Z", created="2027-03-01T00:00:00Z")
    res = world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t, again))
    assert res["vectors_added"] == 2 and world.snap().label_set() == ["New", "Other"]
    assert ledger.tombstones(world.snap()) == {}
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t, old))["vectors_added"] == 0
    assert world.snap().label_set() == ["New", "Other"]


def test_index_files_written_before_digests_and_created_at_are_read(world):
    """An index whose records are [updated_at, version] and tombstones [id, version]: upserts and deletes
    work on it; its tombstones stand."""
    def legacy(old):
        new = old.added(np.eye(32)[:1], [make_entry("A", annotation=11, region="r")], "hash")
        new.info = {ledger.APPLIED: {"11": [ledger.epoch(V1), 1]}, ledger.TOMBSTONES: [["9", 1]]}
        return new

    world.indexes.get(PID).update(legacy)
    v = world.snap().version
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", task(1), annotation(9, ["X", "Y"], V2)))[
        "vectors_added"] == 0
    res = world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", task(1), annotation(11, ["A", "B"], V1)))
    assert res["vectors_added"] == 2 and res["index_version"] == v + 1  # a record without a digest: applied once
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", task(1), annotation(11, ["A", "B"], V1)))[
        "index_version"] == v + 1  # then identical
    assert world.fit("ANNOTATIONS_DELETED", deleted(11))["vectors"] == 0


# -- the catch-up and the rebuild --------------------------------------------------------------------
class FakeLabelStudio:
    def __init__(self, tasks):
        self.task_list = tasks
        outer = self

        class Tasks:
            def list(self, project, fields=None, page=1, page_size=100, **kw):  # a page past the last: 404
                return page_of([t for t in outer.task_list if t["project"] == project], page, page_size)

        class Projects:
            def get(self, id):
                return {"id": id}

        self.tasks, self.projects = Tasks(), Projects()


def test_catch_up_reconciles_and_never_brings_a_deleted_annotation_back(world):
    t1, t2 = task(1), task(2)
    world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t1, annotation(11, ["A", "B"], V1)))
    world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t2, annotation(12, ["C", "D"], V1)))
    world.fit("ANNOTATIONS_DELETED", deleted(12))
    # a listing read before the delete still has 12; 11 is gone from Label Studio (its delete was lost);
    # 13 is new
    listing = [(t1, annotation(13, ["E", "F"], V1)), (t2, annotation(12, ["C", "D"], V1))]
    diff = compare(listing, world.snap(), world.snap().version)
    assert [a["id"] for _, a in diff["upsert"]] == [13] and diff["gone"] == ["11"]

    # an index a late webhook wrote before tombstones were respected (vectors of a deleted annotation):
    # the catch-up finds it gone from Label Studio and its delete is applied
    store = world.indexes.get(PID)
    store.update(lambda old: old.added(np.eye(32)[:1], [make_entry("Zombie", annotation=12, region="z")], "hash"))
    diff = compare([(t1, annotation(11, ["A", "B"], V1))], world.snap(), world.snap().version)
    assert diff["gone"] == ["12"] and diff["upsert"] == []
    assert world.fit("ANNOTATIONS_DELETED", deleted(12))["vectors"] == 2  # 11's two are left
    assert "Zombie" not in world.snap().label_set()


def test_rebuild_lifts_the_tombstone_of_what_label_studio_has_and_keeps_the_others(world):
    t1, t2 = task(1), task(2)
    world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t1, annotation(11, ["A", "B"], V1)))
    world.fit("ANNOTATION_CREATED", body("ANNOTATION_CREATED", t2, annotation(12, ["C", "D"], V1)))
    world.fit("ANNOTATIONS_DELETED", deleted(11, 12))
    # Label Studio restored from a backup holds 11 again (same annotation): START_TRAINING takes it back
    ls = FakeLabelStudio([{**t1, "annotations": [annotation(11, ["A", "B"], V1)]}])
    res = fit("START_TRAINING", {"project": {"id": PID}}, world.indexes, world.fetch, world.emb, client=ls)
    assert res["status"] == "ok" and world.snap().label_set() == ["A", "B"]
    assert list(ledger.tombstones(world.snap())) == ["12"]
    v = world.snap().version
    newer = annotation(11, ["A", "B2"], V2)
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t1, newer))["index_version"] == v + 1
    assert world.fit("ANNOTATION_UPDATED", body("ANNOTATION_UPDATED", t2, annotation(12, ["C", "D"], V2)))[
        "vectors_added"] == 0  # 12 stays deleted
    assert world.snap().label_set() == ["A", "B2"]


# -- through /webhook and the journal -------------------------------------------------------------------
def test_webhooks_through_the_journal_late_and_repeated(tmp_path, monkeypatch):
    from backends.base import init_app

    svc = idservice.IdentifyService(model_dir=tmp_path / "models", embedder=HashEmbedder(), image_fetcher=Fetch(),
                                  client_factory=lambda: None)
    monkeypatch.setattr(idservice, "service", lambda: svc)
    app = init_app(idmodel.IdentifyModel).test_client()
    t, v2 = task(1), annotation(11, ["A", "B"], V2)
    sent = [webhook("ANNOTATION_CREATED", PID, t, annotation(11, ["A", "C"], V1)),
            webhook("ANNOTATION_UPDATED", PID, t, v2), webhook("ANNOTATION_UPDATED", PID, t, v2),
            {"action": "ANNOTATIONS_DELETED", **deleted(11)}, webhook("ANNOTATION_UPDATED", PID, t, v2),
            {"action": "ANNOTATIONS_DELETED", **deleted(11)}]
    try:
        ids = []
        for b in sent:
            r = app.post("/webhook", json=b)
            assert r.status_code == 201 and r.json["result"]["status"] == "queued"
            ids.append(r.json["result"]["journal_id"])
        results = [svc.journal.wait(i, 60)["result"] for i in ids]
    finally:
        svc.stop()
    assert [r["index_version"] for r in results] == [1, 2, 2, 3, 3, 3]
    assert [r.get("vectors_added") for r in results[:3] + results[4:5]] == [2, 2, 0, 0]
    snap = svc.indexes.get(PID).current()
    assert len(snap) == 0 and snap.version == 3 and svc.index_version(PID) == 3
    assert app.get("/metrics").json["identify"]["failed"] == 0


def test_tombstones_keep_their_cap(world, monkeypatch):
    monkeypatch.setattr(ledger, "MAX_TOMBSTONES", 3)
    for i in range(5):
        world.fit("ANNOTATIONS_DELETED", deleted(100 + i))
    assert list(ledger.tombstones(world.snap())) == ["102", "103", "104"]


def test_version_of_an_annotation():
    a = annotation(11, ["A", "B"], V1)
    v = ledger.Version.of(a)
    assert v.updated == pytest.approx(ledger.epoch(V1)) and v.created == ledger.epoch(CREATED)
    assert ledger.Version.of({**a, "lead_time": 9.0, "ground_truth": True}) == v  # not what vectors come from
    assert ledger.Version.of({**a, "result": list(reversed(a["result"]))}).digest != v.digest
    assert ledger.epoch("not a date") is None and ledger.epoch(None) is None
    assert ledger.epoch("2026-01-01T00:00:00") == ledger.epoch("2026-01-01T00:00:00Z")  # naive: UTC
