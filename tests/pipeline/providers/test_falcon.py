"""FalconGrounder: tiny model through the package's real loaders (MLX, and torch on the CPU through our
adapter), the two backends agreeing, and exact box conversion."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import GrounderProvider
from pipeline.detections import Detections
from pipeline.providers.base import ProviderError
from pipeline.providers.falcon import FalconGrounder, detections_from_raw, image_tokens, raw_to_xyxy
from tests.fixtures_models import load_falcon

W, H = 320, 240


@pytest.fixture(scope="module", params=["mlx", "torch"])
def grounder(request, tiny_falcon_dir):
    return load_falcon(tiny_falcon_dir, backend=request.param)


@pytest.fixture(scope="module")
def tiny_falcon_mixing_dir(model_dir):
    """Tiny Falcon whose layers are not identity maps: boxes depend on attention (mask, sinks)."""
    from pipeline.tiny.falcon import build
    out = model_dir / "falcon-perception-tiny-mixing"
    if not (out / "model.safetensors").exists():
        build(out, seed=1, mixing=True)
    return out


def test_loads_through_package_loader(grounder, tiny_falcon_dir):
    where = {"mlx": {"dtype": "float32"}, "torch": {"device": "cpu", "dtype": "float32", "compile": False}}
    assert grounder.loader_calls == [{"hf_local_dir": str(tiny_falcon_dir), "backend": grounder.backend,
                                      **where[grounder.backend]}]
    assert grounder.model_args.dim == 32  # the tiny export, not a full-size model
    assert grounder.describe()["max_dimension"] == 512  # a CPU: the lower default


@pytest.mark.parametrize("cuda, apple, expected, said", [
    (False, False, "torch", "torch backend on the CPU"),
    (False, True, "mlx", "MLX backend (Apple silicon"),
    (True, False, "torch", "torch backend (CUDA)"),
])
def test_auto_backend(caplog, monkeypatch, cuda, apple, expected, said):
    from pipeline.providers import falcon
    from pipeline.providers.falcon import choose_backend
    monkeypatch.setattr(falcon, "_cuda_available", lambda: cuda)
    monkeypatch.setattr(falcon, "_apple_silicon", lambda: apple)
    monkeypatch.setattr(falcon, "_backends", falcon.ProcessCache("falcon backends"))  # this "machine"'s own
    with caplog.at_level(logging.INFO, logger="pipeline.providers.falcon"):
        assert choose_backend("auto") == expected
        assert choose_backend("auto") == expected
    assert caplog.text.count(said) == 1  # decided and said once per process, not per model_version


def test_max_dimension_bounds_image_tokens(grounder, monkeypatch):
    """Falcon encodes at most (max_dimension / 16)^2 image tokens, whatever the input size."""
    import falcon_perception.batch_inference as tb
    import falcon_perception.mlx.batch_inference as mb
    seen = []
    for mod in (tb, mb):
        real = mod.process_batch_and_generate
        monkeypatch.setattr(mod, "process_batch_and_generate",
                            lambda tok, pairs, real=real, **kw: seen.append(kw) or real(tok, pairs, **kw))
    img_id = grounder.tokenizer.image_token_id
    counts = []
    real_gen = grounder.engine.generate
    monkeypatch.setattr(grounder.engine, "generate",
                        lambda **kw: counts.append(int((np.asarray(kw["tokens"]) == img_id).sum())) or real_gen(**kw))
    monkeypatch.setattr(grounder, "max_dimension", 128)
    grounder.boxes(Image.new("RGB", (1600, 1200), (90, 90, 90)), ["cat"])
    assert seen[-1]["max_dimension"] == 128
    assert counts == [(128 // 16) * (96 // 16)]  # 1600x1200 -> 128x96 -> 8 x 6 patches
    assert image_tokens(1600, 1200, 128) == counts[0]  # what the start-up cost estimate counts


def decoder_inputs(monkeypatch) -> dict:
    """Record what reaches the box decoders (the last hidden state at each step) on both backends."""
    import falcon_perception.mlx.model as mm
    import falcon_perception.model as tm
    seen = {"torch": [], "mlx": []}
    real_t, real_m = tm.BboxDecoder.forward, mm.BboxDecoder.__call__
    monkeypatch.setattr(tm.BboxDecoder, "forward",
                        lambda self, x: seen["torch"].append(x.detach().numpy().copy()) or real_t(self, x))
    monkeypatch.setattr(mm.BboxDecoder, "__call__",
                        lambda self, x: seen["mlx"].append(np.array(x)) or real_m(self, x))
    return seen


def test_torch_cpu_agrees_with_mlx(tiny_falcon_mixing_dir, monkeypatch):
    """Same tiny weights (attention and sinks matter here): the torch CPU adapter and the package's MLX
    model give the same hidden states and the same boxes; a wrong mask or ignored sinks would not."""
    from pipeline.providers import falcon_cpu
    torch_g = load_falcon(tiny_falcon_mixing_dir, backend="torch")
    mlx_g = load_falcon(tiny_falcon_mixing_dir, backend="mlx")
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    queries = ["red circle", "stop sign", "cat"]
    seen = decoder_inputs(monkeypatch)
    boxes_t, boxes_m = torch_g.boxes(image, queries), mlx_g.boxes(image, queries)
    assert len(boxes_t) == len(queries)
    np.testing.assert_allclose(boxes_t.xyxy, boxes_m.xyxy, atol=1e-3)
    h_t, h_m = np.concatenate(seen["torch"]), np.concatenate(seen["mlx"])
    assert h_t.shape == h_m.shape and np.abs(h_t).max() > 1
    close = np.abs(h_t - h_m).max()
    assert close < 1e-3

    def worst_with(**patches) -> float:
        with pytest.MonkeyPatch.context() as mp:
            for name, fn in patches.items():
                mp.setattr(falcon_cpu, name, fn)
            seen["torch"].clear()
            torch_g.boxes(image, queries)
            return float(np.abs(np.concatenate(seen["torch"]) - h_m).max())

    real_sdpa, real_mask = falcon_cpu.sdpa_with_sinks, falcon_cpu.DenseMask
    no_sinks = worst_with(sdpa_with_sinks=lambda q, k, v, allowed, sinks: real_sdpa(q, k, v, allowed, sinks - 1e4))
    causal_only = worst_with(DenseMask=type("Causal", (real_mask,), {
        "rows": lambda self, n_q, n_kv: real_mask.rows(self, n_q, n_kv)
        & torch.ones(n_q, n_kv, dtype=torch.bool).tril(n_kv - n_q)}))
    assert no_sinks > 100 * close and causal_only > 100 * close, (no_sinks, causal_only, close)


def test_boxes_from_tiny_model(grounder):
    image = Image.new("RGB", (W, H), (200, 30, 30))
    queries = ["red circle", "stop sign"]
    grounder.boxes(image, queries)  # first call compiles
    t0 = time.perf_counter()
    det = grounder.boxes(image, queries)
    elapsed = time.perf_counter() - t0
    assert isinstance(det, Detections)
    assert len(det) == 2  # the tiny model is wired to emit exactly one box per query
    assert np.isnan(det.scores).all()
    assert set(det.labels) <= set(queries) and list(det.labels) == list(det.queries) == queries
    x1, y1, x2, y2 = det.xyxy.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= W).all() and (y2 <= H).all()
    assert (x2 > x1).all() and (y2 > y1).all()
    print(f"\nFalconGrounder.boxes (tiny MLX, 2 queries, {W}x{H}): {elapsed:.3f} s/call")


def test_raw_conversion_is_exact():
    raw = [{"x": 0.5, "y": 0.25}, {"h": 0.5, "w": 0.2},    # centre (100, 25), 40 x 50 px
           {"x": 0.9, "y": 0.9}, {"h": 0.4, "w": 0.4},     # spills over the right / bottom edges
           {"x": 1.5, "y": 0.5}, {"h": 0.1, "w": 0.1},     # entirely outside: dropped
           {"x": 0.1, "y": 0.1}]                           # coord without size: incomplete, ignored
    xyxy = raw_to_xyxy(raw, 200, 100)
    np.testing.assert_allclose(xyxy, [[80, 0, 120, 50], [140, 70, 200, 100]], atol=1e-4)
    det = detections_from_raw(raw, "cat", 200, 100)
    assert len(det) == 2 and np.isnan(det.scores).all() and list(det.labels) == ["cat", "cat"]
    assert len(raw_to_xyxy([], 200, 100)) == 0


def test_boxes_maps_each_query_output(grounder, monkeypatch):
    """Inject known raw Falcon output per query: pixel boxes and labels come out exactly."""
    known = {"dog": [{"x": 0.5, "y": 0.5}, {"h": 0.5, "w": 0.25}],
             "cat": [],
             "car": [{"x": 0.25, "y": 0.75}, {"h": 0.1, "w": 0.1}, {"x": 0.0, "y": 0.0}, {"h": 0.2, "w": 0.2}]}
    seen = []
    monkeypatch.setattr(grounder, "_generate",
                        lambda image, qs: seen.append((image.size, qs)) or [known[q] for q in qs])
    det = grounder.boxes(Image.new("RGB", (400, 200)), ["dog", "cat", "car", "dog", " "])
    assert seen == [((400, 200), ["dog", "cat", "car"])]  # one task per (distinct, non-empty) query, batched
    np.testing.assert_allclose(det.xyxy, [[150, 50, 250, 150], [80, 140, 120, 160], [0, 0, 40, 20]], atol=1e-4)
    assert list(det.labels) == ["dog", "car", "car"] and np.isnan(det.scores).all()


def test_unloadable_model_is_provider_error(monkeypatch):
    with pytest.raises(ProviderError, match="falcon grounder model 'tiiuae/no-such-falcon-model' is not on this "
                       "machine .* HF_HUB_OFFLINE is set") as e:  # the tests run offline (conftest)
        FalconGrounder.from_config(GrounderProvider(model="tiiuae/no-such-falcon-model", backend="mlx"))
    assert "hf download tiiuae/no-such-falcon-model" in str(e.value)
