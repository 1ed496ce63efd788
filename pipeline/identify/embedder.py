"""open_clip image embedder: batched, no_grad, L2-normalised float32 vectors; one instance per process.

``model`` is an open_clip model name (``ViT-B-32``) or the path of an open_clip model config
JSON (``.../My-Model.json``; registered with ``open_clip.add_model_config``, name = file stem).
``pretrained`` is an open_clip pretrained tag (``laion2b_s34b_b79k``; needs the hub), the path
of a local checkpoint file, or empty/None for random weights (tests only).

The env vars ``LF_CLIP_MODEL`` / ``LF_CLIP_PRETRAINED`` (pipeline/settings.py, ``Models``) override the YAML's
values (``LF_CLIP_PRETRAINED=none`` means no weights).

``projection`` (``providers.identify.projection``): the path of a projection head file
(``head.py``); the embedder returned is then a ``head.ProjectedEmbedder`` whose id names the head."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from pipeline.process_cache import ProcessCache
from pipeline.settings import Models

log = logging.getLogger(__name__)

def resolve_spec(model: str, pretrained: Optional[str]) -> tuple[str, Optional[str]]:
    """(model, pretrained) after the env overrides."""
    env = Models.read()
    model = env.clip_model or model
    if env.clip_pretrained is not None:
        pretrained = env.clip_pretrained
    if pretrained is not None and pretrained.strip().lower() in ("", "none", "null", "random"):
        pretrained = None
    return model, pretrained


def spec_id(model: str, pretrained: Optional[str]) -> str:
    """A stable name for the embedding space (stored in the index, compared on search)."""
    name = Path(model).stem if model.endswith(".json") else model
    pre = "random" if not pretrained else (Path(pretrained).name if os.path.sep in pretrained else pretrained)
    return f"{name}/{pre}"


class Embedder:
    def __init__(self, model: str = "ViT-B-32", pretrained: Optional[str] = "laion2b_s34b_b79k",
                 device: str = "cpu", batch_size: int = 32, dtype: str = "auto"):
        import open_clip
        import torch

        from pipeline.hardware import choose_dtype

        self.model_spec, self.pretrained = model, pretrained
        name = model
        if model.endswith(".json"):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"open_clip model config {model} does not exist")
            open_clip.add_model_config(path)
            name = path.stem
        if pretrained and (os.path.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))) \
                and not Path(pretrained).is_file():
            raise FileNotFoundError(f"open_clip checkpoint {pretrained} does not exist")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None,
                                                                               device=device)
        self.dtype = choose_dtype(device, dtype)
        self.model.to(self.dtype.torch_dtype).eval()
        self.id = spec_id(model, pretrained)  # the embedding space: the same in every dtype
        self.dim = int(self.model.visual.output_dim)
        self._torch = torch

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, dim) float32 unit vectors, one per image (RGB PIL images of any size)."""
        torch = self._torch
        out = np.zeros((len(images), self.dim), np.float32)
        with torch.no_grad():
            for s in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images[s:s + self.batch_size]])
                f = self.model.encode_image(batch.to(self.device, self.dtype.torch_dtype)).float()
                f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                out[s:s + len(batch)] = f.cpu().numpy()
        return out

    def describe(self) -> dict:
        return {"name": "open_clip", "model": self.model_spec, "pretrained": self.pretrained, "id": self.id,
                "dim": self.dim, "device": self.device, "dtype": self.dtype.dtype}


embedders: ProcessCache = ProcessCache("embedders")  # (model, pretrained, device[, projection]) -> embedder


def get_embedder(model: str = "ViT-B-32", pretrained: Optional[str] = "laion2b_s34b_b79k", device: str = "cpu",
                 apply_env: bool = True, projection: Optional[str] = None, dtype: str = "auto"):
    """The process-wide embedder for (model, pretrained, device[, projection head]): loaded once per process."""
    if apply_env:
        model, pretrained = resolve_spec(model, pretrained)
    key = (model, pretrained, device, dtype)

    def load():
        log.info("loading open_clip %s (pretrained=%s) on %s", model, pretrained, device)
        return Embedder(model, pretrained, device, dtype=dtype)
    emb = embedders.get(key, load)
    if not projection:
        return emb

    def load_projected():
        from pipeline.identify.head import ProjectedEmbedder
        projected = ProjectedEmbedder(emb, projection)
        log.info("projection head %s (%s -> dim %d)", projection, projected.id, projected.dim)
        return projected
    return embedders.get((*key, str(Path(projection).resolve())), load_projected)


def embedder_for(provider):
    """The embedder a ``config.IdentifyProvider`` asks for (with its projection head, when it names one)."""
    return get_embedder(provider.model, provider.pretrained, getattr(provider, "device", "cpu"),
                        projection=getattr(provider, "projection", None), dtype=getattr(provider, "dtype", "auto"))
