"""Projection head: SupCon on constructed features, PK batches, the head file, the embedder id rules,
and ``identify train`` / ``index|verify|search --projection`` end to end with the tiny open_clip model."""
import contextlib
import json

import numpy as np
import pytest
import torch

from pipeline.identify.head import (
    HeadError,
    ProjectedEmbedder,
    ProjectionHead,
    evaluate,
    load_head,
    pk_batches,
    projected_id,
    save_head,
    supcon_loss,
    train_head,
)
from pipeline.identify.headconfig import TrainConfig
from pipeline.identify.index import IndexFileError, IndexSnapshot, make_entry
from pipeline.references.cli import main as cli_main
from tests.doubles.images import card


class NuisanceFeatures:
    """Features whose class signal is small and lives in 4 dims, under a shared direction and a large
    per-view nuisance in 24 other dims: close in raw cosine, separable after a learned projection.
    Each call to ``views`` draws new nuisance (what augmentation changes)."""

    def __init__(self, classes=20, per_class=3, dim=64, seed=0):
        rng = np.random.default_rng(seed)
        self.mean = rng.normal(size=dim)
        self.mean /= np.linalg.norm(self.mean)
        basis = np.linalg.qr(rng.normal(size=(dim, 28)))[0]
        self.nuisance, self.signal = basis[:, :24], basis[:, 24:]
        codes = rng.normal(size=(classes, 4))
        self.codes = codes / np.linalg.norm(codes, axis=1, keepdims=True)
        self.labels = np.repeat(np.arange(classes), per_class)
        self.rng = np.random.default_rng(seed + 1)
        self.clean = self.views(np.arange(len(self.labels)))

    def views(self, idx):
        n = self.rng.normal(size=(len(idx), self.nuisance.shape[1])) / np.sqrt(self.nuisance.shape[1])
        f = self.mean + 0.6 * n @ self.nuisance.T + 0.15 * self.codes[self.labels[idx]] @ self.signal.T
        return f.astype(np.float32)


@contextlib.contextmanager
def torch_threads(n):
    """A tiny MLP trains several times faster on one thread than on two busy ones."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def test_the_head_raises_the_median_margin_on_constructed_features():
    data = NuisanceFeatures()
    cfg = TrainConfig(out_dim=16, hidden=64, steps=200, lr=3e-3, classes_per_batch=10, samples_per_class=4)
    with torch_threads(1):
        head, losses = train_head(data.clean, data.labels, data.views, cfg)
    assert np.mean(losses[-10:]) < losses[0] - 1.0
    ev = evaluate(head, data.clean, data.labels, data.views(np.arange(len(data.labels))), data.labels)
    before, after = ev["before"], ev["after"]
    assert before["median_margin"] < 0.05 and before["top1"] < 0.5  # raw features: classes close
    assert after["median_margin"] > before["median_margin"] + 0.1  # the margin rises
    assert after["top1"] >= 0.9


def test_an_untrained_head_does_not_separate_the_classes():
    """The control for the test above: the rise comes from training, not from projecting."""
    data = NuisanceFeatures()
    torch.manual_seed(0)
    ev = evaluate(ProjectionHead(64, 16, 64).eval(), data.clean, data.labels,
                  data.views(np.arange(len(data.labels))), data.labels)
    assert ev["after"]["top1"] < 0.5 and ev["after"]["median_margin"] < 0.1


def test_supcon_loss():
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]]), dim=1)
    mixed = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0, 1], [1, 0.01], [0.01, 1]]), dim=1)
    assert supcon_loss(apart, labels) < supcon_loss(mixed, labels)
    with pytest.raises(ValueError, match="two views"):
        supcon_loss(apart, torch.tensor([0, 1, 2, 3]))


def test_pk_batches():
    labels = np.array(["a"] * 5 + ["b"] * 1 + ["c"] * 3 + ["d"] * 2)
    batches = pk_batches(labels, classes_per_batch=3, samples_per_class=4, rng=np.random.default_rng(0))
    for _ in range(20):
        idx = next(batches)
        assert len(idx) == 12
        groups = labels[idx].reshape(3, 4)
        assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 3
    with pytest.raises(ValueError, match="two labels"):
        next(pk_batches(np.array(["a", "a"]), 2, 2, np.random.default_rng(0)))


class FakeBase:
    """The embedder interface ProjectedEmbedder wraps (deterministic vectors)."""
    id, model_spec, pretrained, device, dim = "base/model", "base", None, "cpu", 8

    def embed(self, images):
        return np.stack([np.eye(8, dtype=np.float32)[i % 8] for i in range(len(images))])

    def describe(self):
        return {"id": self.id}


def test_head_file_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    head = ProjectionHead(8, 4, 16).eval()
    path = tmp_path / "head.pt"
    digest = save_head(path, head, FakeBase(), {"eval": {"views": 3}})
    loaded = load_head(path)
    assert loaded.hash == digest == head.digest() and loaded.embedder == "base/model"
    assert loaded.train == {"eval": {"views": 3}}
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    assert np.allclose(loaded.head.project(x), head.project(x), atol=1e-6)
    assert np.allclose(np.linalg.norm(head.project(x), axis=1), 1, atol=1e-5)
    emb = ProjectedEmbedder(FakeBase(), path)
    assert emb.id == projected_id("base/model", digest) == f"base/model+head-{digest}" and emb.dim == 4
    assert emb.embed([None, None]).shape == (2, 4)

    other = FakeBase()
    other.id = "another/model"
    with pytest.raises(HeadError, match="trained on embedder base/model"):
        ProjectedEmbedder(other, path)
    obj = torch.load(path, weights_only=True)
    obj["state_dict"]["net.0.weight"][0, 0] += 1.0  # weights no longer match the recorded hash
    torch.save(obj, path)
    with pytest.raises(HeadError, match="hash"):
        load_head(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(HeadError, match="not a projection head"):
        load_head(path)
    with pytest.raises(FileNotFoundError):
        load_head(tmp_path / "missing.pt")


def test_indexes_with_and_without_the_head_refuse_each_others_vectors(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "head.pt"
    save_head(path, ProjectionHead(8, 8, 16).eval(), FakeBase())  # same dim in and out: only the id tells
    raw, projected = FakeBase(), ProjectedEmbedder(FakeBase(), path)
    imgs = [None] * 3
    raw_index = IndexSnapshot(raw.embed(imgs), [make_entry(f"L{i}") for i in range(3)], embedder=raw.id)
    head_index = IndexSnapshot(projected.embed(imgs), [make_entry(f"L{i}") for i in range(3)], embedder=projected.id)
    with pytest.raises(IndexFileError, match="rebuild"):
        raw_index.added(projected.embed(imgs[:1]), [make_entry("x")], projected.id)
    with pytest.raises(IndexFileError, match="rebuild"):
        head_index.added(raw.embed(imgs[:1]), [make_entry("x")], raw.id)
    with pytest.raises(IndexFileError, match="queries come from"):
        raw_index.search(projected.embed(imgs[:1]), embedder=projected.id)
    from PIL import Image

    from pipeline.identify.stage import Identifier
    with pytest.raises(IndexFileError, match="queries come from"):
        Identifier(head_index, raw).identify_boxes(Image.new("RGB", (8, 8)), [[0, 0, 8, 8]])
    assert Identifier(head_index, projected, 0, 0).identify_boxes(Image.new("RGB", (8, 8)), [[0, 0, 8, 8]])[0]


# -- end to end with the tiny open_clip model ---------------------------------------------------
@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    for i in range(8):
        for j in range(2):
            card(i).rotate(4 * j, fillcolor=(128, 128, 128)).save(d / f"SDK-00{i}_card_{i}_ur_{j + 1}.png")
    return d


def test_identify_train_and_the_projection_flags(tmp_path, tiny_clip, clip_embedder, refs, capsys):
    spec = ["--model", tiny_clip.model, "--pretrained", tiny_clip.pretrained]
    head_path = tmp_path / "heads" / "head.pt"
    assert cli_main(["train", "--refs", str(refs), "--out", str(head_path), "--steps", "12", "--dim", "16",
                     "--hidden", "32", "--classes-per-batch", "4", *spec]) == 0
    out = capsys.readouterr().out
    assert "fresh augmented views" in out and "median margin" in out
    loaded = load_head(head_path)
    assert loaded.embedder == clip_embedder.id and loaded.head.config["out_dim"] == 16
    ev = loaded.train["eval"]
    assert ev["views"] == 16 and set(ev["before"]) == set(ev["after"]) == {"top1", "median_margin", "p10_margin"}
    assert loaded.train["labels"] == 8 and loaded.train["config"]["steps"] == 12

    raw, proj = tmp_path / "raw.lfidx", tmp_path / "proj.lfidx"
    assert cli_main(["index", "--refs", str(refs), "--out", str(raw), *spec]) == 0
    assert cli_main(["index", "--refs", str(refs), "--out", str(proj), *spec, "--projection", str(head_path)]) == 0
    snap = IndexSnapshot.load(proj)
    assert snap.embedder == f"{clip_embedder.id}+head-{loaded.hash}" and snap.dim == 16
    assert snap.info["projection"] == str(head_path.resolve())
    capsys.readouterr()

    assert cli_main(["verify", "--index", str(raw), "--projection", str(head_path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["before"]["embedder"] == clip_embedder.id and rep["after"]["embedder"] == snap.embedder
    assert rep["before"]["vectors"] == rep["after"]["vectors"] == 16
    assert rep["projection"]["hash"] == loaded.hash
    assert cli_main(["verify", "--index", str(raw), "--projection", str(head_path)]) == 0
    text = capsys.readouterr().out
    assert "without head" in text and f"with head {loaded.hash}" in text and "median margin" in text
    assert cli_main(["verify", "--index", str(proj), "--projection", str(head_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["embedder"] == snap.embedder  # already projected: one report

    query = refs / "SDK-003_card_3_ur_1.png"
    # the projected index names its head: search uses it without --projection
    assert cli_main(["search", "--index", str(proj), "--image", str(query), "--min-cosine", "0", "--min-margin",
                     "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["label"] == "Card 3" and res["cosine"] == pytest.approx(1.0, abs=1e-4)
    # a raw index searched through the head (and the other way round) is refused
    assert cli_main(["search", "--index", str(raw), "--image", str(query), "--projection", str(head_path)]) == 2
    assert "use the same" in capsys.readouterr().err


def test_the_backend_embedder_follows_the_yaml_projection(tmp_path, tiny_clip, clip_embedder):
    from pipeline.config import IdentifyProvider
    from pipeline.identify.embedder import embedder_for
    from pipeline.references.service import IdentifyService
    torch.manual_seed(0)
    head_path = tmp_path / "head.pt"
    save_head(head_path, ProjectionHead(clip_embedder.dim, 8, 16).eval(), clip_embedder)
    prov = IdentifyProvider(model=tiny_clip.model, pretrained=tiny_clip.pretrained, projection=str(head_path))
    emb = embedder_for(prov)
    assert isinstance(emb, ProjectedEmbedder) and emb.base is clip_embedder and emb.dim == 8
    assert embedder_for(prov) is emb  # loaded once per process
    svc = IdentifyService(prov, model_dir=tmp_path / "models")
    assert svc.embedder is emb
    assert embedder_for(prov.model_copy(update={"projection": None})) is clip_embedder


def test_the_backend_fits_and_identifies_through_the_head(tmp_path, tiny_clip, clip_embedder):
    """providers.identify.projection: webhooks embed through the head, the identify stage searches with it,
    and an index built without it refuses the projected vectors."""
    from pipeline.config import IdentifyProvider
    from pipeline.identify.index import IndexStore, project_index_path
    from pipeline.references.service import IdentifyService
    from tests.doubles.images import scene
    from tests.doubles.label_studio import webhook
    from tests.doubles.regions import ls_rect
    torch.manual_seed(0)
    head_path = tmp_path / "head.pt"
    save_head(head_path, ProjectionHead(clip_embedder.dim, 16, 32).eval(), clip_embedder)
    cards = [card(200 + i) for i in range(2)]
    image, boxes = scene([(cards[0], 10, 20, 1.0), (cards[1], 150, 60, 1.1)])
    w, h = image.size
    task = {"id": 1, "project": 3, "data": {"image": "/data/upload/3/t.png"}}
    ann = {"id": 21, "result": [ls_rect(boxes[0], w, h, "Alpha", "r1"), ls_rect(boxes[1], w, h, "Beta", "r2")]}
    body = webhook("ANNOTATION_CREATED", 3, task, ann)
    body.pop("action")
    prov = IdentifyProvider(model=tiny_clip.model, pretrained=tiny_clip.pretrained, projection=str(head_path),
                            min_cosine=0.0, min_margin=0.0)

    svc = IdentifyService(prov, model_dir=tmp_path / "models", image_fetcher=lambda t: image,
                          client_factory=lambda: None)
    assert svc.apply("ANNOTATION_CREATED", body)["status"] == "ok"
    snap = svc.indexes.get(3).current()
    assert snap.embedder == svc.embedder.id == projected_id(clip_embedder.id, load_head(head_path).hash)
    assert snap.dim == 16 and sorted(snap.labels) == ["Alpha", "Beta"]
    query, (qbox,) = scene([(cards[1], 90, 30, 1.3)])
    (m,), version = svc.identifier(3, pin=True).identify_boxes(query, [qbox])
    assert m.label == "Beta" and version == 1

    # the same project indexed without the head: the webhook is refused with a rebuild message
    other = tmp_path / "raw-models"
    IndexStore(project_index_path(other, 3)).replace_all(
        IndexSnapshot(clip_embedder.embed(cards), [make_entry("Alpha"), make_entry("Beta")], embedder=clip_embedder.id))
    svc = IdentifyService(prov, model_dir=other, image_fetcher=lambda t: image, client_factory=lambda: None)
    res = svc.apply("ANNOTATION_CREATED", body)
    assert res["status"] == "error" and "rebuild" in res["reason"]
    with pytest.raises(IndexFileError, match="queries come from"):
        svc.identifier(3).identify_boxes(query, [qbox])
