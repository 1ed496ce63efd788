"""A tiny random-weight open_clip model (≈0.2 M params, 64 px input, dim 64) saved to disk.

``build_tiny_clip(dir)`` writes ``LF-Tiny-CLIP.json`` (an open_clip model config) and
``lf_tiny_clip.pt`` (its state dict).  The embedder loads them through open_clip's real path:
``Embedder(model=<config .json>, pretrained=<checkpoint .pt>)``.  Random weights still map a
shifted / rescaled copy of an image to its own reference, so exact and near-duplicate lookups
can be asserted; image<->text similarity means nothing."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "LF-Tiny-CLIP"
CONFIG = {"embed_dim": 64,
          "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def build_tiny_clip(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """(config path, checkpoint path); built once, reused when both files exist."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, ck = out_dir / f"{NAME}.json", out_dir / "lf_tiny_clip.pt"
    if cfg.exists() and ck.exists():
        return cfg, ck
    import open_clip
    import torch
    cfg.write_text(json.dumps(CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(seed)
    model = open_clip.create_model(NAME, pretrained=None)
    torch.save(model.state_dict(), ck)
    return cfg, ck
