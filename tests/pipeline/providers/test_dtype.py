"""Every torch provider runs in the dtype it is given, through its production loading path (tiny
random-weight models built locally): its weights are in that dtype, it answers, its ``describe()`` (so the
answer-cache key) names the dtype, and ``model_version`` says when a project runs in reduced precision."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import GrounderProvider, SegmenterProvider, parse_project
from pipeline.model_version import model_version, resolved_dtypes

IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
TORCH = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _weights_dtype(module) -> torch.dtype:
    return next(p for p in module.parameters() if p.is_floating_point()).dtype


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_owlv2_and_grounding_dino(dtype, tiny_owlv2_dir, tiny_gdino_dir):
    from pipeline.providers.hf_detectors import GroundingDINOGrounder, OWLv2Grounder
    for cls, path in ((OWLv2Grounder, tiny_owlv2_dir), (GroundingDINOGrounder, tiny_gdino_dir)):
        g = cls.from_config(GrounderProvider(kind=cls.name, model=str(path), device="cpu", dtype=dtype))
        assert _weights_dtype(g.model) == TORCH[dtype] and g.describe()["dtype"] == dtype
        d = g.boxes(IMAGE, ["a cat", "a dog"])
        assert len(d) > 0 and d.xyxy.dtype == np.float32 and np.isfinite(d.scores).all()
    owl = OWLv2Grounder.from_config(GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir), device="cpu",
                                                     dtype=dtype))
    sim = owl.similar(IMAGE, [10, 10, 50, 50])
    assert len(sim) > 0 and np.isfinite(sim.scores).all()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_transformers_vlm(dtype, tiny_qwen_dir):
    from pipeline.config import VLMProvider
    from pipeline.providers.transformers_vlm import TransformersVLM
    vlm = TransformersVLM.from_config(VLMProvider(kind="transformers", model=str(tiny_qwen_dir), device="cpu",
                                                  dtype=dtype))
    assert _weights_dtype(vlm.model) == TORCH[dtype] and vlm.describe()["dtype"] == dtype
    answers = vlm.yes_probabilities([IMAGE, IMAGE.rotate(90)], "Is there a cat?")
    assert all(0.0 <= a.p_yes <= 1.0 for a in answers)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_sam_segmenter(dtype, tiny_sam_dir):
    from pipeline.providers.sam import SamSegmenter
    seg = SamSegmenter.from_config(SegmenterProvider(model=str(tiny_sam_dir), device="cpu", dtype=dtype))
    assert _weights_dtype(seg.model) == TORCH[dtype] and seg.describe()["dtype"] == dtype
    masks = seg.masks_for_boxes(IMAGE, [[10, 10, 60, 60], [50, 20, 120, 90]])
    assert masks.shape == (2, 96, 128) and masks.dtype == bool
    mask, score = seg.mask_for_points(IMAGE, [[30, 30]], [True])
    assert mask.shape == (96, 128) and np.isfinite(score)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_clip_embedder(dtype, tiny_clip):
    from pipeline.identify.embedder import Embedder
    emb = Embedder(tiny_clip.model, tiny_clip.pretrained, "cpu", dtype=dtype)
    assert _weights_dtype(emb.model) == TORCH[dtype] and emb.describe()["dtype"] == dtype
    v = emb.embed([IMAGE, IMAGE.rotate(90)])
    assert v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_falcon_torch_path(dtype, tiny_falcon_dir):
    from tests.fixtures_models import load_falcon
    g = load_falcon(tiny_falcon_dir, backend="torch", device="cpu", dtype=dtype)
    assert g.loader_calls[0]["dtype"] == {"fp32": "float32", "bf16": "bfloat16"}[dtype]
    assert _weights_dtype(g.model) == TORCH[dtype] and g.describe()["dtype"] == dtype
    d = g.boxes(IMAGE, ["a cat"])
    assert d.xyxy.dtype == np.float32


def test_the_answer_cache_tells_dtypes_apart(tiny_owlv2_dir):
    from pipeline.answer_cache import model_identity
    from pipeline.providers.hf_detectors import OWLv2Grounder
    ids = {model_identity(OWLv2Grounder.from_config(GrounderProvider(kind="owlv2", model=str(tiny_owlv2_dir),
                                                                     device="cpu", dtype=d))) for d in ("fp32", "bf16")}
    assert len(ids) == 2


PROJECT = {"project_name": "signs", "target_object": "stop sign", "falcon_queries": ["stop sign"],
           "providers": {"vlm": {"kind": "transformers", "model": "m", "device": "cpu"},
                         "grounder": {"kind": "owlv2", "model": "g", "device": "cpu"}}}


def test_model_version_names_reduced_precision_and_only_that(monkeypatch):
    cfg = parse_project(PROJECT)
    monkeypatch.setenv("LF_DTYPE", "fp32")
    plain = model_version(cfg)
    assert not plain.endswith(("-bf16", "-fp16"))
    monkeypatch.setenv("LF_DTYPE", "bf16")
    assert resolved_dtypes(cfg) == {"vlm": "bf16", "grounder": "bf16", "segmenter": "bf16"}
    assert model_version(cfg) == plain + "-bf16"
    data = {**PROJECT, "providers": {**PROJECT["providers"],
                                     "vlm": {**PROJECT["providers"]["vlm"], "dtype": "fp32"},
                                     "grounder": {**PROJECT["providers"]["grounder"], "dtype": "fp32"},
                                     "segmenter": {"dtype": "fp16"}}}
    assert model_version(parse_project(data)) == plain + "-fp16"  # the fingerprint ignores the setting itself
    monkeypatch.setenv("LF_DTYPE", "fp32")
    assert model_version(parse_project({**PROJECT, "providers": {"vlm": {"kind": "openai", "url": "http://x/v1"},
                                                                 "grounder": {"kind": "owlv2", "dtype": "fp32"}}})) \
        .endswith("openai+owlv2")
