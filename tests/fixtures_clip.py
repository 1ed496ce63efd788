"""Session fixtures: the tiny open_clip model on disk and the embedder loaded from it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.tiny.clip import build_tiny_clip


@dataclass
class TinyClip:
    model: str  # path of the open_clip model config JSON
    pretrained: str  # path of the checkpoint


@pytest.fixture(scope="session")
def tiny_clip(model_dir) -> TinyClip:
    cfg, ck = build_tiny_clip(Path(model_dir) / "tiny-clip")
    return TinyClip(str(cfg), str(ck))


@pytest.fixture(scope="session")
def clip_embedder(tiny_clip):
    """The process-cached embedder, loaded from the tiny model's files (the production path)."""
    from pipeline.identify.embedder import get_embedder
    return get_embedder(tiny_clip.model, tiny_clip.pretrained, "cpu", apply_env=False)
