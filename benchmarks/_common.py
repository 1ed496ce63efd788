"""Shared helpers for the benchmarks: timing (warm-up, repeats, median), peak RSS, tables.

Every benchmark measures the things it compares side by side in ONE process run (interleaved where
possible, so drift in machine load hits both sides alike) and prints a table of ratios plus the exact
configuration it used.  Models carry RANDOM weights: compute cost does not depend on weight values,
so only speed is meaningful; no quality figure is ever printed.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

# the process's settings, only when a benchmark is the program: a test importing a benchmark's functions keeps
# its own environment (the answer cache off here once turned it off for every test after the import)
if Path(sys.argv[0]).resolve().parent == ROOT / "benchmarks":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("LF_ANSWER_CACHE", "0")  # benchmarks time the models: cached answers would skip them

CACHE = Path(os.environ.get("LABEL_FACTORY_BENCH_CACHE", Path.home() / ".cache" / "label-factory-bench"))


def now() -> float:
    return time.perf_counter()


def timed(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def proc_peak_rss_mib(pid: int) -> float:
    """Peak RSS (VmHWM) of another live process, MiB; NaN when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fmt_s(x: float) -> str:
    if x != x:  # NaN
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (x + 2) for x in w) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def print_config(title: str, cfg: dict) -> None:
    print(f"\n## {title}")
    for k, v in cfg.items():
        print(f"- {k}: {v}")


def machine() -> dict:
    import torch
    return {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch threads": torch.get_num_threads(), "torch": torch.__version__}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def built_once(name: str, what: str, build: Callable[[Path], object]) -> Path:
    """``CACHE/name``, made by ``build(path)`` the first time (a model folder is done once it has config.json)."""
    out = CACHE / name
    if not (out / "config.json").exists():
        log(f"building {what} in {out} ...")
        build(out)
    return out


def noise_images(n: int, size: int, seed: int = 0):
    """``n`` distinct random-noise RGB images of ``size`` x ``size`` (compute does not depend on content)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def interleaved(calls: dict, rounds: int, device: str = "cpu", warmup: bool = True) -> dict:
    """Median seconds per call of each side of ``calls`` (name -> fn), sides alternating between rounds so a
    load spike hits all of them; one uncounted warm-up call each first. Each call is bracketed by
    ``pipeline.hardware.synchronize(device)``, so queued GPU work is inside its time."""
    from pipeline.hardware import synchronize
    if warmup:
        for fn in calls.values():
            fn()
    times = {k: [] for k in calls}
    for r in range(rounds):
        for k in (list(calls) if r % 2 == 0 else list(reversed(calls))):
            synchronize(device)
            t = time.perf_counter()
            calls[k]()
            synchronize(device)
            times[k].append(time.perf_counter() - t)
    return {k: median(v) for k, v in times.items()}
