"""benchmarks/gpu_expectations.py: a pass costs the slower of its compute and its weight reads plus launches;
prefill is compute-bound and Falcon's decode steps memory-bound on both GPUs, as docs/gpu.md says."""
from __future__ import annotations

import os

import pytest

_cache_setting = os.environ.get("LF_ANSWER_CACHE")
from benchmarks.gpu_expectations import GPUS, LAUNCH_S_PER_LAYER, Gpu, Pass, stages  # noqa: E402

if _cache_setting is None:
    os.environ.pop("LF_ANSWER_CACHE", None)

GPU = Gpu("test", 100.0, 1000.0, 16, "made up")


def test_a_pass_is_bound_by_the_slower_of_compute_and_memory():
    compute_bound = Pass(flops=40e12, weight_bytes=1e9, layers=10)
    assert compute_bound.seconds(GPU, 0.5, 1.0) == pytest.approx(0.8 + 10 * LAUNCH_S_PER_LAYER)
    memory_bound = Pass(flops=1e9, weight_bytes=5e9, layers=10, repeat=8)
    assert memory_bound.seconds(GPU, 0.5, 0.5) == pytest.approx(8 * (0.01 + 10 * LAUNCH_S_PER_LAYER))


@pytest.mark.parametrize("gpu", GPUS, ids=lambda g: g.name)
def test_prefill_is_compute_bound_and_falcon_decode_memory_bound(gpu):
    per = stages("drones", (4032, 3024))
    for p in per["filter"] + per["verify"] + per["ground"][:1]:
        assert p.flops / (gpu.bf16_dense_tflops * 1e12 * 0.4) > p.weight_bytes / (gpu.bandwidth_gbs * 1e9 * 0.7)
    decode = per["ground"][1]
    assert decode.flops / (gpu.bf16_dense_tflops * 1e12 * 0.4) < decode.weight_bytes / (gpu.bandwidth_gbs * 1e9 * 0.7)
