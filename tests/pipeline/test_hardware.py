"""pipeline/hardware.py: what each machine profile gets for ``dtype: auto``, that an explicit setting always
wins, and the /proc/cpuinfo reading behind it (profiles of the machines users label on)."""
from __future__ import annotations

import pytest

from pipeline.hardware import GPU, Machine, choose_dtype, default_threads, parse_cpuinfo, pins_host_memory, to_model

XEON_AMX = Machine("Intel(R) Xeon(R) Platinum 8480+", "x86_64",
                   frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}), 2, 2, 24)
XEON_ICELAKE = Machine("Intel(R) Xeon(R) Processor", "x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"}), 2, 2, 24)
EPYC_AVX2 = Machine("AMD EPYC 7B13", "x86_64", frozenset({"avx2", "fma"}), 2, 2, 24)
EPYC_ZEN4 = Machine("AMD EPYC 9B14", "x86_64", frozenset({"avx2", "avx512f", "avx512_bf16"}), 2, 2, 24)
A100 = Machine("x", "x86_64", frozenset({"avx2"}), 8, 16, 80, gpus=(GPU(0, "NVIDIA A100", (8, 0), 80),))
T4 = Machine("x", "x86_64", frozenset({"avx2"}), 4, 8, 32, gpus=(GPU(0, "Tesla T4", (7, 5), 16),))
MAC = Machine("Apple M4", "arm64", frozenset({"asimd"}), 10, 10, 32, mps=True)


def _rates(fp32, bf16):
    calls = []

    def probe(device, dtypes):
        calls.append((device, dtypes))
        return {"fp32": fp32, "bf16": bf16}
    probe.calls = calls
    return probe


def _never(*args):
    raise AssertionError("the probe ran although the flags already decide")


@pytest.mark.parametrize("machine, device, probe, expected", [
    (XEON_AMX, "cpu", _rates(323, 2427), "bf16"),  # AMX: 7.5x measured
    (EPYC_ZEN4, "cpu", _rates(200, 390), "bf16"),  # AVX512-BF16 without AMX: ~2x
    (XEON_AMX, "cpu", _rates(300, 330), "fp32"),  # the flags say yes but the probe finds no gain (a VM hiding AMX)
    (XEON_ICELAKE, "cpu", _never, "fp32"),  # AVX-512 without BF16: bf16 is emulated, 4x slower
    (EPYC_AVX2, "cpu", _never, "fp32"),
    (A100, "cuda", _never, "bf16"),
    (A100, "cuda:0", _never, "bf16"),
    (T4, "cuda", _never, "fp16"),
    (MAC, "mps", _never, "fp16"),
    (A100, "cuda:3", _never, "fp32"),  # a GPU that is not there
])
def test_auto_per_machine_profile(machine, device, probe, expected):
    choice = choose_dtype(device, "auto", machine_info=machine, probe=probe, environ={})
    assert choice.dtype == expected, choice.reason
    assert choice.reason


def test_the_reason_names_the_measurement_or_the_missing_flags():
    probe = _rates(323, 2427)
    amx = choose_dtype("cpu", "auto", machine_info=XEON_AMX, probe=probe, environ={})
    assert "amx_bf16" in amx.reason and "2427" in amx.reason and "7.5x" in amx.reason
    assert probe.calls == [("cpu", ("fp32", "bf16"))]
    ice = choose_dtype("cpu", "auto", machine_info=XEON_ICELAKE, probe=_never, environ={})
    assert "no native bf16" in ice.reason


@pytest.mark.parametrize("setting", ["fp32", "bf16", "fp16", "FP32"])
@pytest.mark.parametrize("machine", [XEON_AMX, EPYC_AVX2, A100, MAC])
def test_an_explicit_setting_is_always_honoured(setting, machine):
    for device in ("cpu", "cuda", "mps"):
        assert choose_dtype(device, setting, machine_info=machine, probe=_never, environ={}).dtype == setting.lower()


def test_lf_dtype_says_what_auto_means_and_an_explicit_setting_still_wins():
    env = {"LF_DTYPE": "bf16"}
    assert choose_dtype("cpu", "auto", machine_info=EPYC_AVX2, probe=_never, environ=env).dtype == "bf16"
    assert choose_dtype("cpu", "fp32", machine_info=EPYC_AVX2, probe=_never, environ=env).dtype == "fp32"
    assert choose_dtype("cpu", "auto", machine_info=XEON_AMX, probe=_never, environ={"LF_DTYPE": "fp32"}).dtype \
        == "fp32"
    with pytest.raises(ValueError, match="LF_DTYPE"):
        choose_dtype("cpu", "auto", machine_info=EPYC_AVX2, probe=_never, environ={"LF_DTYPE": "half"})
    with pytest.raises(ValueError, match="expected one of auto, fp32, bf16, fp16"):
        choose_dtype("cpu", "int4", machine_info=EPYC_AVX2, probe=_never, environ={})


SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8 avx512_fp16

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 0
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8 avx512_fp16

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8 avx512_fp16
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm sve

processor\t: 1
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm sve
"""


def test_cpuinfo_flags_and_physical_cores():
    name, flags, cores = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert name == "Intel(R) Xeon(R) Platinum 8480+" and cores == 2  # 3 logical CPUs, 2 cores (hyper-threads)
    assert {"amx_bf16", "avx512_bf16", "avx512f"} <= flags
    _, arm, arm_cores = parse_cpuinfo(GRAVITON)
    assert {"bf16", "sve", "asimd"} <= arm and arm_cores == 0  # no core ids: the caller uses the logical count


def test_threads_are_the_physical_cores_split_between_sharers():
    m = Machine("x", "x86_64", frozenset(), physical_cores=8, logical_cores=16)
    assert default_threads(m) == 8 and default_threads(m, sharers=2) == 4 and default_threads(m, sharers=32) == 1


def test_an_explicit_setting_never_asks_for_the_device():
    """The device (found by importing torch) is only looked up when the choice depends on it."""
    def device():
        raise AssertionError("the device was looked up for an explicit setting")
    assert choose_dtype(device, "fp32", machine_info=XEON_AMX, probe=_never, environ={}).dtype == "fp32"
    assert choose_dtype(device, "auto", machine_info=XEON_AMX, probe=_never, environ={"LF_DTYPE": "fp32"}).dtype \
        == "fp32"
    assert choose_dtype(lambda: "cuda", "auto", machine_info=A100, probe=_never, environ={}).dtype == "bf16"


def test_model_version_does_not_import_torch_for_an_explicit_dtype():
    import subprocess
    import sys
    code = ("import sys\nfrom pipeline.config import load_project\nfrom pipeline.model_version import model_version\n"
            "model_version(load_project('projects/drones.yaml'))\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**__import__("os").environ, "LF_DTYPE": "fp32"}).stdout.strip()
    assert out == "False"  # a /setup computes model_version: it must not wait for torch to import


def test_workers_share_the_physical_cores(monkeypatch):
    import torch

    from pipeline import hardware
    monkeypatch.setattr(hardware, "machine", lambda: Machine("x", "x86_64", frozenset(), physical_cores=8,
                                                              logical_cores=16))
    before = torch.get_num_threads()
    try:
        assert hardware.share_cores(1) is None and torch.get_num_threads() == before  # one worker: torch's own
        assert hardware.share_cores(2) == 4 and torch.get_num_threads() == 4
        assert hardware.share_cores(16) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("device, pinned", [("cuda", True), ("cuda:1", True), ("CUDA:0", True), ("cpu", False),
                                            ("mps", False), ("mlx", False)])
def test_only_cuda_copies_go_through_pinned_memory(device, pinned):
    assert pins_host_memory(device) is pinned


def test_to_model_on_the_cpu_casts_floats_only_and_pins_nothing():
    import torch
    batch = {"pixel_values": torch.rand(1, 3, 4, 4), "input_ids": torch.tensor([[1, 2, 3]]), "note": "kept"}
    out = to_model(batch, "cpu", torch.bfloat16)
    assert out["pixel_values"].dtype == torch.bfloat16 and out["input_ids"].dtype == torch.int64
    assert out["note"] == "kept"
    assert not out["pixel_values"].is_pinned() and not out["input_ids"].is_pinned()
    assert to_model(torch.rand(2), "cpu").dtype == torch.float32


def test_to_model_towards_cuda_pins_then_copies_asynchronously_then_casts(monkeypatch):
    """The CUDA branch is chosen by the device string: each host tensor is pinned, copied with non_blocking,
    and only then cast (recorded here instead of run: this machine may have no GPU)."""
    import torch
    calls = []

    class Copied:
        def __init__(self, what):
            self.what = what

        def to(self, *args, **kwargs):
            calls.append((self.what, args, kwargs))
            return Copied(f"{self.what}>{args[0] if args else kwargs}")

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: calls.append(("pin", t.dtype)) or Copied(str(t.dtype)))
    out = to_model({"pixel_values": torch.rand(1, 3), "input_ids": torch.tensor([[1, 2]])}, "cuda:0", torch.float16)
    assert calls == [("pin", torch.float32), ("torch.float32", ("cuda:0",), {"non_blocking": True}),
                     ("torch.float32>cuda:0", (torch.float16,), {}),
                     ("pin", torch.int64), ("torch.int64", ("cuda:0",), {"non_blocking": True})]
    assert out["input_ids"].what == "torch.int64>cuda:0"
