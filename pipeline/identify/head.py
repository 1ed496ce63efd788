"""Projection head: a small MLP on FROZEN open_clip image features, trained so references of one
label land together and other labels apart (``label-factory identify train``).

* ``ProjectionHead``: ``layers`` = 2: Linear(in, hidden) -> GELU -> Linear(hidden, out); 1: Linear(in,
  out); the output is L2-normalised.  The encoder never changes: a head costs one small matmul per
  crop and can be dropped or retrained without touching the model.
* Training (``train_head``): supervised contrastive loss (SupCon, Khosla et al. 2020) over batches of
  P labels x K views each (``pk_batches``), so every view has positives.  A view is a reference crop
  under a random resized crop, a small rotation and colour jitter (``augment``), embedded by the
  frozen encoder; ``clean_views`` of the K views per label are the un-augmented crops, whose features
  are computed once.  Nothing augmented is cached: each step draws new views.
* Evaluation (``evaluate``): fresh augmented views of every reference (new random draws, never
  trained on) searched against the un-augmented references, in the raw and the projected space:
  top-1 and median margin before / after.  These views are of the training references, so the
  figures say how well the head separates *these* labels, not unseen ones.
* The head file (``save_head`` / ``load_head``; torch, loaded with ``weights_only=True``) holds
  the architecture, the weights, the id of the embedder it was trained on, the training settings
  and the evaluation; ``hash`` is a digest of architecture + weights.
* ``ProjectedEmbedder``: an embedder (same interface as ``embedder.Embedder``) = base embedder +
  head; its ``id`` is ``<base id>+head-<hash>``, so an index built without the head refuses
  vectors made with it and vice versa (``IndexSnapshot._check`` / ``search(embedder=...)``).

Open-set caveat: a head is trained on the labels it was shown; labels added later (webhooks) are
embedded through it too.  Retrain when many new labels have come in and compare with
``identify verify --projection``.  Cosines in the projected space are not CLIP cosines: re-tune
``min_cosine`` / ``min_margin`` for an index built with a head.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from pipeline.atomic import save_atomic
from pipeline.identify.headconfig import TrainConfig

log = logging.getLogger(__name__)

FORMAT = 1


class HeadError(ValueError):
    """A head file that cannot be used (corrupt, wrong format, trained on another embedder)."""


class ProjectionHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 512, layers: int = 2):
        super().__init__()
        if layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, not {layers}")
        self.config = {"in_dim": int(in_dim), "out_dim": int(out_dim), "hidden": int(hidden), "layers": int(layers)}
        if layers == 1:
            self.net = nn.Linear(in_dim, out_dim)
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)

    def project(self, vectors: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Unit float32 vectors in the head's space, for (N, in_dim) features (no grad)."""
        vectors = np.asarray(vectors, np.float32)
        out = np.zeros((len(vectors), self.config["out_dim"]), np.float32)
        with torch.no_grad():
            for s in range(0, len(vectors), batch):
                out[s:s + batch] = self(torch.from_numpy(np.array(vectors[s:s + batch], np.float32))).numpy()
        return out

    def digest(self) -> str:
        """Architecture + weights, 12 hex digits: names the head in embedder ids and model versions."""
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
        return h.hexdigest()[:12]


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (the "L_out" form) of unit vectors ``z`` (N, d) with int labels (N,)."""
    n = len(z)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        raise ValueError("a SupCon batch needs at least two views of one label")
    per_anchor = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -per_anchor.mean()


def pk_batches(labels: np.ndarray, classes_per_batch: int, samples_per_class: int,
               rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless (P*K,) index batches: P labels drawn without replacement, K references of each
    (with replacement when a label has fewer than K: its views differ by augmentation)."""
    _, inv = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inv == c) for c in range(inv.max() + 1)]
    if len(members) < 2:
        raise ValueError("training a projection head needs references of at least two labels")
    p = min(classes_per_batch, len(members))
    while True:
        batch = []
        for c in rng.choice(len(members), p, replace=False):
            m = members[c]
            batch.append(rng.choice(m, samples_per_class, replace=len(m) < samples_per_class))
        yield np.concatenate(batch)


def augment(image: Image.Image, scale=(0.6, 1.0), degrees: float = 8.0, jitter: float = 0.3) -> Image.Image:
    """One random view of a crop, the size of the crop: small rotation, random resized crop (aspect
    within 0.8-1.25x of the crop's), colour jitter. Uses torch's RNG (seed it for repeatable runs)."""
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF
    image = image.convert("RGB")
    w, h = image.size
    image = T.RandomRotation(degrees, interpolation=T.InterpolationMode.BILINEAR)(image)
    i, j, ch, cw = T.RandomResizedCrop.get_params(image, list(scale), [0.8 * w / h, 1.25 * w / h])
    image = TF.resized_crop(image, i, j, ch, cw, [h, w], antialias=True)
    return T.ColorJitter(jitter, jitter, jitter, jitter / 10)(image)


ViewFn = Callable[[np.ndarray], np.ndarray]  # reference indices -> (len, in_dim) features of NEW augmented views


def train_head(clean: np.ndarray, labels: Sequence, views: ViewFn, cfg: TrainConfig,
               progress: Optional[Callable[[int, float], None]] = None) -> tuple[ProjectionHead, list[float]]:
    """Train a head on features: ``clean`` (N, in_dim) un-augmented reference features, ``views(idx)``
    features of fresh augmented views of references ``idx``. Returns the head (eval mode) and the loss per step."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    labels = np.asarray(labels)
    _, y = np.unique(labels, return_inverse=True)
    clean = np.asarray(clean, np.float32)
    head = ProjectionHead(clean.shape[1], cfg.out_dim, cfg.hidden, cfg.layers)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    k = cfg.samples_per_class
    n_clean = min(max(0, cfg.clean_views), k)
    losses = []
    batches = pk_batches(labels, cfg.classes_per_batch, k, rng)
    head.train()
    for step in range(cfg.steps):
        idx = next(batches)
        is_clean = (np.arange(len(idx)) % k) < n_clean
        feats = np.empty((len(idx), clean.shape[1]), np.float32)
        feats[is_clean] = clean[idx[is_clean]]
        if (~is_clean).any():
            feats[~is_clean] = views(idx[~is_clean])
        loss = supcon_loss(head(torch.from_numpy(feats)), torch.from_numpy(y[idx]), cfg.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress:
            progress(step + 1, losses[-1])
    head.eval()
    return head, losses


def _space_metrics(index_vecs: np.ndarray, labels: np.ndarray, query_vecs: np.ndarray, truth: np.ndarray) -> dict:
    from pipeline.identify.index import IndexSnapshot, make_entry
    snap = IndexSnapshot(index_vecs, [make_entry(lab) for lab in labels])
    res = snap.search(query_vecs, top_k=1, min_cosine=-1.0, min_margin=-3.0)
    margins = np.array([m.margin for m in res])
    return {"top1": float(np.mean([m.best_label == lab for m, lab in zip(res, truth)])),
            "median_margin": float(np.median(margins)), "p10_margin": float(np.percentile(margins, 10))}


def evaluate(head: ProjectionHead, clean: np.ndarray, labels: Sequence, fresh_views: np.ndarray,
             view_labels: Sequence) -> dict:
    """Fresh augmented views (``view_labels`` their labels) searched among the un-augmented
    references (``clean``, ``labels``), in the raw space and the projected space.

    A view's margin is ``IndexSnapshot.search``'s: its cosine to the nearest reference minus the
    cosine of the nearest reference of another label (its own un-augmented reference is in the index,
    as a new photo of a known card would find its reference)."""
    labels, view_labels = np.asarray(labels).astype(str), np.asarray(view_labels).astype(str)
    return {"before": _space_metrics(clean, labels, fresh_views, view_labels),
            "after": _space_metrics(head.project(clean), labels, head.project(fresh_views), view_labels),
            "views": int(len(fresh_views))}


# -- images --------------------------------------------------------------------------------------
def train_on_images(embedder, images: Sequence[Image.Image], labels: Sequence[str], cfg: TrainConfig,
                    progress: Optional[Callable[[int, float], None]] = None,
                    eval_views: int = 2000) -> tuple[ProjectionHead, dict]:
    """Train on reference crops through the frozen ``embedder``; returns the head and its training record
    (``eval_views``: how many references, at most, get a fresh view for the before/after evaluation)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    clean = embedder.embed(list(images))

    def views(idx: np.ndarray) -> np.ndarray:
        return embedder.embed([augment(images[i]) for i in idx])
    head, losses = train_head(clean, labels, views, cfg, progress)
    torch.manual_seed(cfg.seed + 1_000_003)  # evaluation views are new draws
    picked = np.sort(np.random.default_rng(cfg.seed + 1).permutation(len(images))[:eval_views])
    metrics = evaluate(head, clean, labels, views(picked), np.asarray(labels)[picked])
    record = {"config": asdict(cfg), "references": len(images), "labels": len(set(labels)),
              "loss_first": losses[0] if losses else None,
              "loss_last": float(np.mean(losses[-10:])) if losses else None,
              "seconds": round(time.perf_counter() - t0, 1), "eval": metrics}
    return head, record


# -- the head file --------------------------------------------------------------------------------
@dataclass
class LoadedHead:
    head: ProjectionHead
    embedder: str  # id of the embedder it was trained on
    hash: str
    path: Optional[Path] = None
    model: Optional[str] = None
    pretrained: Optional[str] = None
    train: dict = field(default_factory=dict)


def save_head(path: Union[str, Path], head: ProjectionHead, embedder, train: Optional[dict] = None) -> str:
    """Write the head file atomically; returns its hash."""
    digest = head.digest()
    obj = {"format": FORMAT, "kind": "label-factory projection head", "config": head.config,
           "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}, "hash": digest,
           "embedder": embedder.id, "model": embedder.model_spec, "pretrained": embedder.pretrained,
           "train_json": json.dumps(train or {})}
    buf = io.BytesIO()
    torch.save(obj, buf)
    save_atomic(path, lambda f: f.write(buf.getbuffer()))
    return digest


def load_head(path: Union[str, Path]) -> LoadedHead:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"projection head {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling error means "not a head file"
        raise HeadError(f"{path}: not a projection head file: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "state_dict" not in obj:
        raise HeadError(f"{path}: not a label-factory projection head (format {FORMAT})")
    head = ProjectionHead(**obj["config"])
    try:
        head.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        raise HeadError(f"{path}: weights do not fit the recorded architecture: {e}") from None
    head.eval()
    if head.digest() != obj["hash"]:
        raise HeadError(f"{path}: weights do not match the recorded hash {obj['hash']} (corrupt file?)")
    return LoadedHead(head, obj["embedder"], obj["hash"], path, obj.get("model"), obj.get("pretrained"),
                      json.loads(obj.get("train_json") or "{}"))


def projected_id(base_id: str, digest: str) -> str:
    return f"{base_id}+head-{digest}"


class ProjectedEmbedder:
    """``base`` embedder followed by a projection head; the same interface as ``embedder.Embedder``."""

    def __init__(self, base, head: Union[LoadedHead, str, Path]):
        loaded = head if isinstance(head, LoadedHead) else load_head(head)
        if loaded.embedder != base.id:
            raise HeadError(f"projection head {loaded.path} was trained on embedder {loaded.embedder}, "
                            f"not {base.id}: train a head for this model (identify train)")
        self.base, self.loaded, self.head = base, loaded, loaded.head
        self.model_spec, self.pretrained, self.device = base.model_spec, base.pretrained, base.device
        self.projection = str(loaded.path) if loaded.path else None
        self.id = projected_id(base.id, loaded.hash)
        self.dim = loaded.head.config["out_dim"]

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.head.project(self.base.embed(images))

    def describe(self) -> dict:
        return {**self.base.describe(), "id": self.id, "dim": self.dim, "projection": self.projection,
                "projection_hash": self.loaded.hash}
