"""Approximate search above the switch size: IVF vs exact, removals, the on-disk base, margins."""
import json
import struct
import time
import zlib

import numpy as np
import pytest

from pipeline.identify import ann
from pipeline.identify.index import MAGIC, IndexSnapshot, IndexStore, make_entry

DIM = 32
SYNC = dict(min_size=2000, nprobe=4, build="sync")


def clustered(rng, classes, per=5, n_queries=0, noise=0.35):
    """Class centres sharing a common direction; references and queries are noisy views of them."""
    mean = rng.normal(size=DIM)
    centre = mean / np.linalg.norm(mean) + rng.normal(size=(classes, DIM)) / np.sqrt(DIM) * 0.8
    lab = np.repeat(np.arange(classes), per)
    x = centre[lab] + noise * rng.normal(size=(len(lab), DIM)) / np.sqrt(DIM)
    q = centre[rng.integers(0, classes, n_queries)] + noise * rng.normal(size=(n_queries, DIM)) / np.sqrt(DIM)
    return x, lab, q


def entries(lab):
    return [make_entry(f"card {c}", annotation=int(i)) for i, c in enumerate(lab)]


@pytest.fixture
def settings(monkeypatch):
    for k, v in {"LF_ANN_MIN": "2000", "LF_ANN_NPROBE": "4", "LF_ANN_BUILD": "sync"}.items():
        monkeypatch.setenv(k, v)
    return ann.AnnSettings(**SYNC)


def test_exact_below_the_switch_size_ivf_above(settings):
    rng = np.random.default_rng(0)
    x, lab, q = clustered(rng, 500, n_queries=5)  # 2500 vectors
    small = IndexSnapshot(x[:1999], entries(lab[:1999]))
    big = IndexSnapshot(x, entries(lab))
    assert isinstance(small.searcher(), ann.ExactSearch)
    s = big.searcher()
    assert isinstance(s, ann.ApproximateSearch) and s.kind == "ivf"
    assert s.params.nprobe == 4 < s.base.index.nlist  # really approximate: 4 of the lists
    big.search(q)  # env settings: the search itself goes through the IVF
    assert big._ann is s
    assert isinstance(big.searcher(ann.AnnSettings(min_size=10 ** 9)), ann.ExactSearch)


def test_recall_at_1_against_exact_on_clustered_vectors(settings):
    rng = np.random.default_rng(1)
    x, lab, q = clustered(rng, 1600, n_queries=300)  # 8000 references in 64 lists
    snap = IndexSnapshot(x, entries(lab))
    exact = snap.search(q, 5, 0.0, 0.05, settings=ann.AnnSettings(min_size=10 ** 9))

    def recall(nprobe):
        approx = snap.search(q, 5, 0.0, 0.05, settings=ann.AnnSettings(min_size=2000, nprobe=nprobe, build="sync"))
        assert snap.searcher(settings).base.index.nlist == 64
        for a, e in zip(approx, exact):  # IVF-Flat cosines are exact; only the candidate set is approximate
            if a.neighbors[0].source == e.neighbors[0].source:
                assert a.cosine == pytest.approx(e.cosine, abs=1e-5)
        return (np.mean([a.neighbors[0].source == e.neighbors[0].source for a, e in zip(approx, exact)]),
                np.mean([a.label == e.label for a, e in zip(approx, exact)]))
    assert recall(1)[0] < 0.9  # one list of 64: clearly approximate, so the next line measures something
    r1, same_answer = recall(16)
    assert r1 >= 0.99 and same_answer >= 0.99


def test_removed_vectors_never_come_back_and_added_ones_are_found(tmp_path, settings):
    rng = np.random.default_rng(2)
    x, lab, _ = clustered(rng, 600)  # 3000
    store = IndexStore(tmp_path / "idx.lfidx")
    snap = store.replace_all(IndexSnapshot(x, entries(lab), embedder="e"))
    base = snap.searcher().base
    gone = set(range(0, len(x), 3))
    snap = store.remove_annotations(sorted(gone))
    new = rng.normal(size=(4, DIM))
    snap = store.add(new, [make_entry("new", annotation=10 ** 6 + i) for i in range(4)], "e")
    s = snap.searcher()
    assert s.kind == "ivf" and s.base is base  # no rebuild: the base serves the new snapshot
    assert s.removed == len(gone) and len(s.extra) == 4
    res = snap.search(x[sorted(gone)], top_k=32, min_cosine=0, min_margin=0)  # exact copies of removed ones
    returned = {n.source["annotation"] for m in res for n in m.neighbors}
    assert not returned & gone
    assert all(m.cosine < 0.9999 for m in res)
    for i, m in enumerate(snap.search(new, 3, 0, 0)):
        assert m.label == "new" and m.neighbors[0].source == {"annotation": 10 ** 6 + i}
        assert m.cosine == pytest.approx(1.0, abs=1e-5)
    # a removal of the *added* vectors too, and the searcher's view of it
    snap = store.remove_annotations([10 ** 6])
    assert len(snap.searcher().extra) == 3
    assert all(n.source.get("annotation") != 10 ** 6 for n in snap.search(new[:1], 32, 0, 0)[0].neighbors)


def test_many_changes_rebuild_the_base(tmp_path, settings, monkeypatch):
    monkeypatch.setenv("LF_ANN_MAX_CHANGES", "100")
    rng = np.random.default_rng(3)
    x, lab, _ = clustered(rng, 600)
    store = IndexStore(tmp_path / "idx.lfidx")
    snap = store.replace_all(IndexSnapshot(x, entries(lab), embedder="e"))
    first = snap.searcher().base
    snap = store.add(rng.normal(size=(150, DIM)), [make_entry("new")] * 150, "e")
    s = snap.searcher()
    assert s.base is not first and s.base.version == snap.version and s.changes == 0


def test_the_base_is_cached_on_disk_and_reused(tmp_path, settings, monkeypatch):
    rng = np.random.default_rng(4)
    x, lab, q = clustered(rng, 600, n_queries=20)
    path = tmp_path / "idx.lfidx"
    snap = IndexStore(path).replace_all(IndexSnapshot(x, entries(lab), embedder="e"))
    want = snap.search(q, 5, 0, 0)
    assert snap.searcher().kind == "ivf" and ann.cache_path(path).is_file()
    ann.registry.clear()  # another process / a restart: loads the cache, builds nothing

    def no_build(*a, **k):
        raise AssertionError("built again instead of loading the cache")
    monkeypatch.setattr(ann.AnnBase, "build", no_build)
    again = IndexStore(path).current()
    assert again.searcher().kind == "ivf"
    got = again.search(q, 5, 0, 0)
    assert [m.neighbors[0].source for m in got] == [m.neighbors[0].source for m in want]
    # a corrupt cache is ignored (searches stay exact) and rebuilt
    ann.registry.clear()
    ann.cache_path(path).write_bytes(b"LFIVF\x01\nbroken")
    monkeypatch.undo()
    for k, v in {"LF_ANN_MIN": "2000", "LF_ANN_NPROBE": "4", "LF_ANN_BUILD": "sync"}.items():
        monkeypatch.setenv(k, v)
    fresh = IndexStore(path).current()
    assert fresh.searcher().kind == "ivf"
    assert ann.AnnBase.load(ann.cache_path(path), fresh.lineage).ntotal == len(fresh)


def test_a_rebuilt_index_gets_a_new_base(tmp_path, settings):
    rng = np.random.default_rng(5)
    x, lab, _ = clustered(rng, 600)
    store = IndexStore(tmp_path / "idx.lfidx")
    old = store.replace_all(IndexSnapshot(x, entries(lab), embedder="e"))
    old_base = old.searcher().base
    new = store.replace_all(IndexSnapshot(x[::-1].copy(), entries(lab[::-1]), embedder="e"))  # ids mean other rows
    assert new.lineage != old.lineage
    s = new.searcher()
    assert s.base is not old_base and s.base.lineage == new.lineage
    m = new.search(x[:1], 1, 0, 0)[0]
    assert m.neighbors[0].source == {"annotation": len(x) - 1}  # row len-1 of the new index holds x[0]


def test_background_build_answers_exactly_until_the_base_is_ready(tmp_path, settings, monkeypatch):
    monkeypatch.setenv("LF_ANN_BUILD", "background")
    rng = np.random.default_rng(6)
    x, lab, q = clustered(rng, 600, n_queries=3)
    snap = IndexStore(tmp_path / "idx.lfidx").replace_all(IndexSnapshot(x, entries(lab), embedder="e"))
    first = snap.searcher()
    assert first.kind == "exact"
    assert len(snap.search(q, 3, 0, 0)) == 3
    deadline = time.monotonic() + 30
    while snap.searcher().kind != "ivf":
        assert time.monotonic() < deadline, "the background build never finished"
        time.sleep(0.05)


def test_margin_when_the_candidates_hold_one_label(settings):
    """3000 near-duplicates of A crowd every IVF candidate list; the one B is in a list never probed."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=DIM)
    b = rng.normal(size=DIM)  # unrelated direction: another IVF list
    refs = np.vstack([a + 0.05 * rng.normal(size=(3000, DIM)), b[None]])
    snap = IndexSnapshot(refs, [make_entry("A")] * 3000 + [make_entry("B")])
    s = snap.searcher(settings)
    assert s.kind == "ivf"
    _, rows = s.knn((a / np.linalg.norm(a))[None].astype(np.float32), len(snap))
    assert 3000 not in rows[0]  # the IVF alone never sees B
    exact = snap.search(a, 3, 0, 0, settings=ann.AnnSettings(min_size=10 ** 9))[0]
    approx = snap.search(a, 3, 0, 0, settings=settings)[0]
    cos_b = float(snap.vectors[3000] @ (a / np.linalg.norm(a)))
    assert approx.label == "A" and approx.margin == pytest.approx(approx.cosine - cos_b, abs=1e-5)
    assert approx.margin == pytest.approx(exact.margin, abs=1e-5)
    only_a = IndexSnapshot(refs[:3000], [make_entry("A")] * 3000)
    m = only_a.search(a, 3, 0, 0, settings=settings)[0]
    assert m.margin == pytest.approx(m.cosine + 1.0, abs=1e-5)  # no other label anywhere: -1


def test_format_1_files_still_load(tmp_path):
    vecs = np.eye(4, 8, dtype=np.float32)
    ents = [make_entry(f"L{i}") for i in range(4)]
    head = {"format": 1, "version": 3, "embedder": "e", "dim": 8, "count": 4, "created": 0.0, "info": {},
            "crc32": zlib.crc32(vecs.tobytes()), "entries": ents}
    raw = json.dumps(head).encode()
    p = tmp_path / "old.lfidx"
    p.write_bytes(MAGIC + struct.pack("<Q", len(raw)) + raw + vecs.tobytes())
    snap = IndexSnapshot.load(p)
    assert snap.version == 3 and list(snap.ids) == [0, 1, 2, 3] and snap.next_id == 4
    assert snap.search(vecs[2], 1, 0, 0)[0].label == "L2"
    store = IndexStore(p)
    new = store.add(np.ones((1, 8)), [make_entry("L4")], "e")  # written back as format 2, ids continue
    assert list(IndexSnapshot.load(p).ids) == [0, 1, 2, 3, 4] and new.lineage == snap.lineage


def test_ids_survive_a_round_trip_and_are_never_reused(tmp_path):
    store = IndexStore(tmp_path / "i.lfidx")
    store.add(np.eye(3, 8), [make_entry("a", annotation=1), make_entry("b", annotation=2), make_entry("c")])
    store.remove_annotations([2])
    snap = store.add(np.eye(8)[3:4], [make_entry("d")])
    assert list(snap.ids) == [0, 2, 3] and snap.next_id == 4
    loaded = IndexSnapshot.load(store.path)
    assert list(loaded.ids) == [0, 2, 3] and loaded.next_id == 4 and loaded.lineage == snap.lineage
    with pytest.raises(ValueError, match="increasing"):
        IndexSnapshot(np.eye(2, 8), [make_entry("a")] * 2, ids=[3, 1])
