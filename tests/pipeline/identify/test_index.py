"""Reference index: lookups with the tiny open_clip model, thresholds, persistence, verify report, CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pipeline.identify.index import UNKNOWN, IndexFileError, IndexSnapshot, IndexStore, make_entry
from pipeline.identify.report import format_report, guidance, verify_report
from pipeline.references.cli import main as cli_main
from tests import REPO
from tests.doubles.images import card, scene

N_CARDS = 12


@pytest.fixture(scope="module")
def cards():
    return [card(i) for i in range(N_CARDS)]


@pytest.fixture(scope="module")
def ref_index(clip_embedder, cards):
    vecs = clip_embedder.embed(cards)
    entries = [make_entry(f"Card {i}", "ur" if i % 2 else None, file=f"card_{i}.png") for i in range(N_CARDS)]
    return IndexSnapshot(vecs, entries, embedder=clip_embedder.id)


def test_embedder_loads_the_saved_checkpoint(tiny_clip, clip_embedder, cards):
    """A second Embedder from the same files gives the same vectors; another seed's weights do not."""
    from pipeline.identify.embedder import Embedder, get_embedder
    again = Embedder(tiny_clip.model, tiny_clip.pretrained)
    assert np.allclose(again.embed(cards[:3]), clip_embedder.embed(cards[:3]), atol=1e-5)
    assert get_embedder(tiny_clip.model, tiny_clip.pretrained, apply_env=False) is clip_embedder  # process cache
    random = Embedder(tiny_clip.model, None)
    assert not np.allclose(random.embed(cards[:1]), clip_embedder.embed(cards[:1]), atol=1e-3)
    v = clip_embedder.embed(cards[:5])
    assert v.dtype == np.float32 and v.shape == (5, clip_embedder.dim)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with pytest.raises(FileNotFoundError):
        Embedder(tiny_clip.model, "/nonexistent/ck.pt")


def test_env_overrides_the_model_spec(monkeypatch):
    from pipeline.identify.embedder import resolve_spec
    monkeypatch.setenv("LF_CLIP_MODEL", "/m/Tiny.json")
    monkeypatch.setenv("LF_CLIP_PRETRAINED", "none")
    assert resolve_spec("ViT-B-32", "laion2b_s34b_b79k") == ("/m/Tiny.json", None)


def test_exact_copy_finds_itself(clip_embedder, cards, ref_index):
    res = ref_index.search(clip_embedder.embed(cards), top_k=3, min_cosine=0.99, min_margin=0.0)
    for i, m in enumerate(res):
        assert m.label == f"Card {i}" and m.known
        assert m.cosine == pytest.approx(1.0, abs=1e-4)
        assert m.variant == ("ur" if i % 2 else None)
        assert m.neighbors[0].source == {"file": f"card_{i}.png"} and len(m.neighbors) == 3
        assert m.margin > 0


def test_shifted_and_rescaled_copy_finds_its_reference(clip_embedder, cards, ref_index):
    """Each card pasted into a scene at an offset and another scale, cropped a little loosely."""
    from pipeline.crops import crop
    hits = 0
    for i, c in enumerate(cards):
        img, (box,) = scene([(c, 40 + 7 * i, 30 + 3 * i, 1.35)])
        loose = [box[0] - 3, box[1] + 2, box[2] + 2, box[3] - 3]
        m = ref_index.search(clip_embedder.embed([crop(img, loose)]), 5, 0.0, 0.0)[0]
        hits += m.best_label == f"Card {i}"
        assert m.best_label == f"Card {i}", (i, m.neighbors[:2])


def test_thresholds_make_unknown(clip_embedder, cards, ref_index):
    q = clip_embedder.embed(cards[:1])
    m = ref_index.search(q, 5, min_cosine=1.01, min_margin=0.0)[0]  # cosine can never reach it
    assert m.label == UNKNOWN and m.best_label == "Card 0" and not m.known
    m = ref_index.search(q, 5, min_cosine=0.0, min_margin=1.5)[0]  # margin too small
    assert m.label == UNKNOWN
    empty = IndexSnapshot()
    (m,) = empty.search(q)
    assert m.label == UNKNOWN and m.best_label is None and np.isnan(m.cosine)


def test_margin_is_to_the_best_other_label():
    """Many references of one label crowd the top-k; the margin still finds the other label."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    same = base + rng.normal(scale=0.01, size=(100, 64))  # 100 refs of A, all very close to base
    other = base + rng.normal(scale=0.5, size=(1, 64))  # 1 ref of B, further away
    snap = IndexSnapshot(np.vstack([same, other]), [make_entry("A")] * 100 + [make_entry("B")])
    m = snap.search(base, top_k=3, min_cosine=0, min_margin=0)[0]
    cos_b = float(snap.vectors[100] @ (base / np.linalg.norm(base)))
    assert m.label == "A" and m.margin == pytest.approx(m.cosine - cos_b, abs=1e-5)
    only = IndexSnapshot(same[:3], [make_entry("A")] * 3)
    m = only.search(base, 1, 0, 0)[0]
    assert m.margin == pytest.approx(m.cosine + 1.0, abs=1e-5)  # no other label: its cosine counts as -1


def test_annotation_keys_add_replace_remove(tmp_path):
    store = IndexStore(tmp_path / "idx.lfidx")
    assert store.current().version == 0 and len(store.current()) == 0
    e = lambda lab, a, r: make_entry(lab, annotation=a, region=r, task=1)  # noqa: E731
    rng = np.random.default_rng(1)
    store.set_annotation(7, rng.normal(size=(2, 16)), [e("A", 7, "r1"), e("B", 7, "r2")], "emb")
    store.set_annotation(8, rng.normal(size=(1, 16)), [e("C", 8, "r1")], "emb")
    snap = store.set_annotation(7, rng.normal(size=(1, 16)), [e("Z", 7, "r1")], "emb")  # r2 deleted in the update
    assert snap.version == 3 and sorted(snap.labels) == ["C", "Z"]
    snap = store.remove_annotations([8])
    assert snap.version == 4 and list(snap.labels) == ["Z"]
    with pytest.raises(IndexFileError, match="rebuild"):
        store.add(rng.normal(size=(1, 16)), [e("Q", 9, "r")], "another-model")
    loaded = IndexSnapshot.load(store.path)  # what is on disk is the same
    assert loaded.version == 4 and list(loaded.labels) == ["Z"] and loaded.embedder == "emb"
    assert np.allclose(loaded.vectors, snap.vectors)


def test_other_process_writes_are_seen(tmp_path):
    a, b = IndexStore(tmp_path / "i.lfidx"), IndexStore(tmp_path / "i.lfidx")
    a.add(np.ones((1, 8)), [make_entry("A")])
    assert b.current().version == 1
    b.add(np.eye(8)[:1], [make_entry("B")])  # b's writer re-reads a's version first
    assert a.current().version == 2 and sorted(a.current().labels) == ["A", "B"]


def test_corrupt_file_is_refused(tmp_path):
    p = tmp_path / "i.lfidx"
    IndexSnapshot(np.ones((3, 8)), [make_entry("A")] * 3).save(p)
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="checksum"):
        IndexSnapshot.load(p)
    p.write_bytes(b"garbage")
    with pytest.raises(IndexFileError, match="magic"):
        IndexSnapshot.load(p)


# -- verify report ---------------------------------------------------------------------
def test_verify_report_on_constructed_index():
    """5 well-separated labels x 3 refs, plus a twin pair (Twin A / Twin B) nearly identical."""
    rng = np.random.default_rng(3)
    dim = 32
    centers = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:6]  # orthonormal directions
    vecs, entries = [], []
    for k in range(5):
        for j in range(3):
            vecs.append(centers[k] + rng.normal(scale=0.05, size=dim))
            entries.append(make_entry(f"Label {k}", source_ref=j))
    twin = centers[5]
    for _ in range(2):
        vecs.append(twin + rng.normal(scale=0.01, size=dim))
        entries.append(make_entry("Twin A"))
        vecs.append(twin + rng.normal(scale=0.01, size=dim))
        entries.append(make_entry("Twin B"))
    rep = verify_report(IndexSnapshot(np.array(vecs), entries), pairs=3)
    assert rep["vectors"] == 19 and rep["labels"] == 7
    pair = rep["confusable"][0]
    assert {pair["a"], pair["b"]} == {"Twin A", "Twin B"} and pair["cosine"] > 0.99
    assert rep["scored"] == 19 and rep["singletons"] == 0
    # the 15 separated refs identify themselves; the twins are a coin toss
    assert 15 / 19 <= rep["top1_loo"] < 1.0
    assert rep["median_margin"] > 0.3 and rep["guidance"] == "ship"
    assert rep["min_margin"] < 0.05
    text = format_report(rep)
    assert "Twin A" in text and "<== this index" in text and "ship" in text


def test_guidance_table():
    assert guidance(0.45) == "ship"
    assert guidance(0.2) == "consider fine-tune"
    assert guidance(0.05) == "fine-tune"


# -- CLI ------------------------------------------------------------------------------------
def test_cli_index_verify_search(tmp_path, tiny_clip, cards, capsys):
    refs = tmp_path / "refs"
    (refs / "sub").mkdir(parents=True)
    names = ["LOCH-JP001_dark_magician_ur", "blue-eyes_white_dragon_scr", "pot_of_greed"]
    for i, n in enumerate(names):
        cards[i].save(refs / ("sub" if i == 2 else "") / f"{n}.png")
    (refs / "notes.txt").write_text("not an image")
    (refs / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "idx" / "refs.lfidx"
    spec = ["--model", tiny_clip.model, "--pretrained", tiny_clip.pretrained]
    assert cli_main(["index", "--refs", str(refs), "--out", str(out), *spec]) == 0
    assert "version 1, 3 references, 3 labels" in capsys.readouterr().out
    snap = IndexSnapshot.load(out)
    assert {(e["label"], e["variant"]) for e in snap.entries} == {
        ("Dark Magician", "ur"), ("Blue-Eyes White Dragon", "scr"), ("Pot Of Greed", None)}
    assert snap.info["model"] == tiny_clip.model

    assert cli_main(["verify", "--index", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["vectors"] == 3 and rep["singletons"] == 3 and rep["guidance"] in ("ship", "consider fine-tune",
                                                                                  "fine-tune")
    assert cli_main(["verify", "--index", str(out)]) == 0
    assert "most-confusable pairs" in capsys.readouterr().out

    img, (box,) = scene([(cards[1], 50, 40, 1.2)])
    img.save(tmp_path / "query.png")
    # model + pretrained come from the index's header
    assert cli_main(["search", "--index", str(out), "--image", str(tmp_path / "query.png"),
                     "--box", ",".join(map(str, box)), "--min-cosine", "0", "--min-margin", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["label"] == "Blue-Eyes White Dragon" and res["variant"] == "scr" and res["index_version"] == 1
    # rebuild over the same file: version goes up
    assert cli_main(["index", "--refs", str(refs), "--out", str(out), *spec]) == 0
    assert IndexSnapshot.load(out).version == 2


def test_identify_cli_help(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "identify", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "index" in r.stdout and "verify" in r.stdout


# -- atomic writes ------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pipeline.identify.index import IndexSnapshot, IndexStore, make_entry
    store = IndexStore(sys.argv[1])
    n, i = int(sys.argv[2]), 0
    print("ready", flush=True)
    while True:
        i += 1
        v = np.full((n, 64), float(i % 7 + 1), np.float32)  # every row identical: easy to check whole
        store.replace_all(IndexSnapshot(v, [make_entry(f"gen {i}")] * n, info={"gen": i}))
""")


def test_sigkill_during_writes_leaves_a_loadable_index(tmp_path):
    path = tmp_path / "idx.lfidx"
    IndexStore(path).replace_all(IndexSnapshot(np.ones((4, 64)), [make_entry("first")] * 4, info={"gen": 0}))
    rng = np.random.default_rng(0)
    for _trial in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "150000"], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(float(rng.uniform(0.2, 0.8)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        snap = IndexSnapshot.load(path)  # checksum-verified: complete, not torn
        gen = snap.info["gen"]
        assert len(snap) in (4, 150000)
        assert all(e["label"] == ("first" if gen == 0 else f"gen {gen}") for e in snap.entries[:3])
        assert np.allclose(snap.vectors, snap.vectors[0])
    # the next writer sweeps any temp file the killed one left
    IndexStore(path).add(np.ones((1, 64)), [make_entry("after")])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
