"""What this machine is, and the torch dtype each provider runs in: read once per process, never assumed.

``machine()`` reads the CPU (model name, the instruction-set flags that matter for inference, physical and
logical cores), memory and the accelerators torch can see. ``choose_dtype(device, requested)`` turns a
provider's ``dtype`` setting into a torch dtype name with the reason, once per process per device:

* ``fp32`` / ``bf16`` / ``fp16``: as asked (an explicit setting is always honoured);
* ``auto`` (the default): ``LF_DTYPE`` when set, else by device:
  - CUDA: bf16 when the GPU has it (compute capability 8.0 and newer), else fp16;
  - MPS (Apple silicon): fp16;
  - CPU: bf16 only when the CPU has native bf16 matmuls (``amx_bf16`` or ``avx512_bf16``) *and* a short
    measured probe (``matmul_rates``) finds bf16 at least ``BF16_MIN_GAIN`` times faster than fp32 here;
    else fp32. A CPU without those flags (AVX2 only, or AVX-512 without BF16) emulates bf16 and runs it
    slower than fp32, so it stays in fp32 without probing.

The choice is logged once with its reason and is part of ``model_version`` and of the answer-cache key
(``describe()`` of each provider), because it changes predictions. Not here: loading models (each
provider casts its own weights) and per-stage timing estimates (``pipeline/cost.py``)."""
from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Optional

from pipeline.process_cache import ProcessCache
from pipeline.settings import DTYPE_SETTINGS, Models

log = logging.getLogger(__name__)

DTYPES = DTYPE_SETTINGS[1:]  # ("fp32", "bf16", "fp16"); DTYPE_SETTINGS adds "auto"
TORCH_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                     "amx_bf16", "amx_int8", "amx_fp16", "avx_vnni", "asimd", "sve", "bf16", "i8mm")
BF16_MIN_GAIN = 1.3  # bf16 must beat fp32 by this factor in the probe to be chosen on a CPU
PROBE_SIZE = 1024
PROBE_SECONDS = 0.15  # per round and dtype; rounds alternate dtypes so a load spike hits both


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    capability: tuple[int, int]
    memory_gb: float

    @property
    def has_bf16(self) -> bool:
        return self.capability >= (8, 0)


@dataclass(frozen=True)
class Machine:
    cpu: str
    arch: str
    flags: frozenset = field(default_factory=frozenset)
    physical_cores: int = 1
    logical_cores: int = 1
    memory_gb: float = 0.0
    gpus: tuple = ()
    mps: bool = False

    @property
    def cpu_bf16(self) -> bool:
        return any(f in self.flags for f in BF16_CPU_FLAGS)

    def describe(self) -> dict:
        return {"cpu": self.cpu, "arch": self.arch, "flags": sorted(self.flags),
                "physical_cores": self.physical_cores, "logical_cores": self.logical_cores,
                "memory_gb": round(self.memory_gb, 1), "mps": self.mps,
                "gpus": [{"index": g.index, "name": g.name, "capability": ".".join(map(str, g.capability)),
                          "memory_gb": round(g.memory_gb, 1), "bf16": g.has_bf16} for g in self.gpus]}


def _cpuinfo() -> tuple[str, frozenset, int]:
    """(model name, flags, physical cores) of this machine; where there is no /proc/cpuinfo, what
    ``platform`` says and no flags."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return platform.processor() or platform.machine(), frozenset(), 0


def parse_cpuinfo(text: str) -> tuple[str, frozenset, int]:
    """(model name, flags, physical cores) from the text of /proc/cpuinfo (x86 ``flags``, Arm ``Features``;
    physical cores: distinct (physical id, core id) pairs, 0 when the file has none)."""
    name, flags, cores = platform.machine(), set(), set()
    phys = core = None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and value:
            name = value
        elif key in ("flags", "Features") and value:
            flags.update(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not key and phys is not None and core is not None:
            cores.add((phys, core))
            phys = core = None
    if phys is not None and core is not None:
        cores.add((phys, core))
    return name, frozenset(flags), len(cores)


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _accelerators() -> tuple[tuple, bool]:
    try:
        import torch
    except ImportError:
        return (), False
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(GPU(i, p.name, (p.major, p.minor), p.total_memory / 2 ** 30))
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return tuple(gpus), mps


def read_machine() -> Machine:
    name, flags, physical = _cpuinfo()
    logical = os.cpu_count() or 1
    try:
        logical = len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:
        pass
    gpus, mps = _accelerators()
    return Machine(cpu=name, arch=platform.machine(), flags=frozenset(f for f in flags if f in INTERESTING_FLAGS),
                   physical_cores=max(1, min(physical or logical, logical)), logical_cores=logical,
                   memory_gb=_memory_gb(), gpus=gpus, mps=mps)


_machine: ProcessCache = ProcessCache("machine")
_rates: ProcessCache = ProcessCache("matmul rates")  # (device, dtype, size) -> GFLOP/s
_choices: ProcessCache = ProcessCache("dtype choices")  # (device, requested) -> DtypeChoice


def machine() -> Machine:
    """This machine, read once per process."""
    return _machine.get("this", read_machine)


# -- the probe ------------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    """Wait for queued work on ``device`` (CUDA, MPS) so a timing covers it; nothing on a CPU."""
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def matmul_rates(device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",), rounds: int = 3,
                 seconds: float = PROBE_SECONDS, size: int = PROBE_SIZE) -> dict[str, float]:
    """GFLOP/s of a ``size``³ matmul per dtype on ``device``: ``rounds`` rounds that alternate the dtypes not
    measured yet, each running for ``seconds``; a dtype's rate is its best round (a busy machine slows some
    rounds, none speeds one up). Each (device, dtype, size) is measured once per process."""
    missing = [d for d in dtypes if _rates.peek((device, d, size)) is None]
    if missing:
        measured = _measure(device, tuple(missing), rounds, seconds, size)
        for d, rate in measured.items():
            _rates.get((device, d, size), lambda rate=rate: rate)
    return {d: _rates.get((device, d, size), lambda d=d: _measure(device, (d,), rounds, seconds, size)[d])
            for d in dtypes}


def _measure(device: str, dtypes: tuple[str, ...], rounds: int, seconds: float, size: int) -> dict[str, float]:
    import torch
    mats = {}
    for d in dtypes:
        t = getattr(torch, TORCH_NAMES[d])
        mats[d] = (torch.randn(size, size, device=device).to(t), torch.randn(size, size, device=device).to(t))
    best = {d: 0.0 for d in dtypes}
    flops = 2.0 * size ** 3
    for d in dtypes:  # warm-up: the first call of a dtype pays for kernel selection
        a, b = mats[d]
        a @ b
    synchronize(device)
    for _ in range(rounds):
        for d in dtypes:
            a, b = mats[d]
            n, t0 = 0, time.perf_counter()
            while True:
                a @ b
                n += 1
                synchronize(device)
                took = time.perf_counter() - t0
                if took >= seconds:
                    break
            best[d] = max(best[d], n * flops / took / 1e9)
    return best


# -- the choice ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # fp32 | bf16 | fp16
    reason: str

    @property
    def torch_dtype(self):
        import torch
        return getattr(torch, TORCH_NAMES[self.dtype])


def _cpu_auto(m: Machine, probe) -> DtypeChoice:
    if not m.cpu_bf16:
        have = ", ".join(f for f in ("avx512f", "avx2") if f in m.flags) or "no AVX-512/AVX2"
        return DtypeChoice("fp32", f"the CPU ({m.cpu}; {have}) has no native bf16 (amx_bf16/avx512_bf16): "
                                   "bf16 would be emulated and slower")
    rates = probe("cpu", ("fp32", "bf16"))
    gain = rates["bf16"] / max(rates["fp32"], 1e-9)
    flags = "/".join(f for f in BF16_CPU_FLAGS if f in m.flags)
    measured = f"bf16 {rates['bf16']:.0f} vs fp32 {rates['fp32']:.0f} GFLOP/s measured ({gain:.1f}x)"
    if gain >= BF16_MIN_GAIN:
        return DtypeChoice("bf16", f"the CPU has {flags}; {measured}")
    return DtypeChoice("fp32", f"the CPU has {flags} but {measured}, less than {BF16_MIN_GAIN}x")


def choose_dtype(device, requested: Optional[str] = "auto", *, machine_info: Optional[Machine] = None,
                 probe=None, environ=None) -> DtypeChoice:
    """The dtype a torch provider on ``device`` runs in for its ``requested`` setting (module docstring).
    ``device`` may be a function that returns it: it is called only when the choice depends on it (``auto``),
    so an explicit setting never imports torch to find the device.
    ``machine_info``/``probe``/``environ``: a machine profile, a ``matmul_rates``-like function and an
    environment to decide for (tests); the defaults are this machine's, and only then is the choice
    cached and logged."""
    requested = (requested or "auto").lower()
    lf_dtype = Models.read(environ).dtype
    if requested == "auto" and lf_dtype != "auto":
        requested, source = lf_dtype, "LF_DTYPE"
    else:
        source = "the setting"
    if requested not in DTYPE_SETTINGS:
        raise ValueError(f"dtype {requested!r} ({source}): expected one of {', '.join(DTYPE_SETTINGS)}")
    if requested != "auto":
        return DtypeChoice(requested, f"{source} says {requested}")
    device = device() if callable(device) else device
    own = machine_info is None and probe is None and environ is None

    def decide() -> DtypeChoice:
        m = machine_info or machine()
        dev = device.lower()
        if dev.startswith("cuda"):
            index = int(dev.split(":", 1)[1]) if ":" in dev else 0
            gpu = next((g for g in m.gpus if g.index == index), None)
            if gpu is None:
                return DtypeChoice("fp32", f"{device}: no such GPU visible")
            if gpu.has_bf16:
                return DtypeChoice("bf16", f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) "
                                           "has bf16")
            return DtypeChoice("fp16", f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) "
                                       "has fp16 but no bf16")
        if dev == "mps":
            return DtypeChoice("fp16", "Apple silicon GPU (MPS): fp16")
        if dev == "cpu":
            return _cpu_auto(m, probe or matmul_rates)
        return DtypeChoice("fp32", f"device {device!r}: fp32")

    if not own:
        return decide()

    def decide_and_log() -> DtypeChoice:
        choice = decide()
        log.info("dtype on %s: %s (%s)", device, choice.dtype, choice.reason)
        return choice
    return _choices.get((device, requested), decide_and_log)


def default_threads(m: Optional[Machine] = None, sharers: int = 1) -> int:
    """torch intra-op threads for one of ``sharers`` processes/actors running models side by side on this
    machine: its physical cores split between them (hyper-threads add nothing to matmuls), at least 1."""
    m = m or machine()
    return max(1, m.physical_cores // max(1, sharers))


def share_cores(sharers: int) -> Optional[int]:
    """Give this process its share of the physical cores as torch intra-op threads when ``sharers``
    processes run models side by side (gunicorn workers): without it each would use them all. Returns the
    threads set, or None when there is nothing to share (one process) or no torch."""
    if sharers <= 1:
        return None
    try:
        import torch
    except ImportError:
        return None
    n = default_threads(sharers=sharers)
    torch.set_num_threads(n)
    log.info("torch threads: %d (%d physical cores shared by %d workers)", n, machine().physical_cores, sharers)
    return n


def median_seconds(fn, repeat: int = 5, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls, synchronizing ``device`` around each (benchmarks)."""
    times = []
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pins_host_memory(device: str) -> bool:
    """Whether host -> ``device`` copies go through page-locked (pinned) host memory, asynchronously: on CUDA,
    where a pinned copy is a DMA that overlaps the host's next work; never on a CPU (nothing is copied) or on
    MPS (unified memory)."""
    return str(device).lower().startswith("cuda")


def to_model(batch, device: str, torch_dtype=None):
    """``batch`` (a tensor, or a mapping of them: a processor's BatchFeature, a dict) on ``device``, its
    floating-point tensors in ``torch_dtype`` (the model's), integer ones (token ids, masks) as they are.
    To CUDA a host tensor is pinned and copied with ``non_blocking`` (``pins_host_memory``), then cast there:
    the copy is ordered before the model's kernels on the same stream, so nothing waits for it."""
    import torch
    pinned = pins_host_memory(device)

    def move(t):
        if not isinstance(t, torch.Tensor):
            return t
        dtype = torch_dtype if torch_dtype is not None and t.is_floating_point() else None
        if pinned and t.device.type == "cpu":
            t = t.pin_memory().to(device, non_blocking=True)
            return t if dtype is None else t.to(dtype)
        return t.to(device) if dtype is None else t.to(device=device, dtype=dtype)
    if isinstance(batch, torch.Tensor):
        return move(batch)
    for key in list(batch.keys()):
        batch[key] = move(batch[key])
    return batch
