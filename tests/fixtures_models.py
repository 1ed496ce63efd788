"""Session fixtures: tiny random-weight models built once per test session under ``model_dir``.

Loaded as a pytest plugin by tests/conftest.py.  Each fixture returns a HF model directory that
loads through the real ``from_pretrained`` path."""
from __future__ import annotations

import falcon_perception
import pytest

from pipeline.config import GrounderProvider
from pipeline.providers.falcon import FalconGrounder
from pipeline.tiny.falcon import use_tiny_model_args


@pytest.fixture(scope="session")
def tiny_qwen_dir(model_dir):
    from pipeline.tiny.qwen import build
    return build(model_dir / "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_owlv2_dir(model_dir):
    from pipeline.tiny.detectors import build_owlv2
    return build_owlv2(model_dir / "owlv2")


@pytest.fixture(scope="session")
def tiny_gdino_dir(model_dir):
    from pipeline.tiny.detectors import build_grounding_dino
    return build_grounding_dino(model_dir / "grounding_dino")


@pytest.fixture(scope="session")
def tiny_sam_dir(model_dir):
    from pipeline.tiny.sam import build_sam
    return build_sam(model_dir / "sam")


@pytest.fixture(scope="session")
def tiny_sam2_dir(model_dir):
    from pipeline.tiny.sam import build_sam2
    return build_sam2(model_dir / "sam2")


@pytest.fixture(scope="session")
def tiny_sam3_dir(model_dir):
    from pipeline.tiny.sam import build_sam3
    return build_sam3(model_dir / "sam3")


@pytest.fixture(scope="session")
def tiny_owlv2_960_dir(model_dir):
    """Tiny OWLv2 weights behind the real 960 px image processor (padding and resizing at real cost)."""
    from pipeline.tiny.detectors import build_owlv2
    return build_owlv2(model_dir / "owlv2-960", shape="tiny-960")


def load_falcon(model_dir, **cfg) -> FalconGrounder:
    with pytest.MonkeyPatch.context() as mp:
        use_tiny_model_args(model_dir, mp)  # the package's size table has no entry for a tiny model
        calls = []
        real = falcon_perception.load_and_prepare_model
        mp.setattr(falcon_perception, "load_and_prepare_model", lambda **kw: calls.append(kw) or real(**kw))
        g = FalconGrounder.from_config(GrounderProvider(model=str(model_dir), **cfg))
    g.loader_calls = calls
    return g
