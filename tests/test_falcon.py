"""FalconGrounder: tiny model through the package's real MLX loader, and exact box conversion."""
from __future__ import annotations

import logging
import time

import falcon_perception
import numpy as np
import pytest
from PIL import Image

from pipeline.config import GrounderProvider
from pipeline.detections import Detections
from pipeline.providers.base import ProviderError
from pipeline.providers.falcon import FalconGrounder, detections_from_raw, raw_to_xyxy
from pipeline.tiny.falcon import use_tiny_model_args

W, H = 320, 240


@pytest.fixture(scope="module")
def grounder(tiny_falcon_dir):
    with pytest.MonkeyPatch.context() as mp:
        use_tiny_model_args(tiny_falcon_dir, mp)  # the package's size table has no entry for a tiny model
        calls = []
        real = falcon_perception.load_and_prepare_model
        mp.setattr(falcon_perception, "load_and_prepare_model", lambda **kw: calls.append(kw) or real(**kw))
        g = FalconGrounder.from_config(GrounderProvider(model=str(tiny_falcon_dir)))
    g.loader_calls = calls
    return g


def test_loads_through_package_loader(grounder, tiny_falcon_dir):
    assert grounder.backend == "mlx"
    assert grounder.loader_calls == [{"hf_local_dir": str(tiny_falcon_dir), "backend": "mlx", "dtype": "float32"}]
    assert grounder.model_args.dim == 32  # the tiny export, not a full-size model


def test_auto_backend_logs_mlx_without_cuda(caplog, monkeypatch):
    from pipeline.providers import falcon
    from pipeline.providers.falcon import choose_backend
    monkeypatch.setattr(falcon, "_cuda_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="pipeline.providers.falcon"):
        assert choose_backend("auto") == "mlx"
    assert "falcon: using MLX backend (no CUDA)" in caplog.text


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
    with pytest.raises(ProviderError, match="cannot load model 'tiiuae/no-such-falcon-model'"):
        FalconGrounder.from_config(GrounderProvider(model="tiiuae/no-such-falcon-model", backend="mlx"))
