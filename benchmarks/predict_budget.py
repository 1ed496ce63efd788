"""Seconds and peak RSS per task through /predict for the whole cascade at real photo sizes, with and without
the pixel budgets, side by side in one run.

Two backends (``backends._wsgi`` under gunicorn, 1 worker x 2 threads) run the same project -- filter,
ground, verify on, every gate open (thresholds 0, max_boxes 3, so verify sees 3 crops) -- and differ only in
``budgets:``: the defaults, or every budget ``null`` (full resolution everywhere, as before the budgets).
Models: OWLv2 with google/owlv2-base-patch16-ensemble's published shape (960 px), and a tiny Qwen2.5-VL
with Qwen2.5-VL's PUBLISHED preprocessor settings (min 3,136 / max 12,845,056 px, 28 px per token), so image
decoding, resizing, the processors and the vision tokens are real while the VLM's own compute is small
(benchmarks/filter_budget.py measures the 3B model's cost per filter call).  Random weights.

The decode step alone is measured first, in a fresh process per photo: the peak RSS growth of decoding the
JPEG at full size (``budgets.decode_pixels: null``) and at the default working resolution (what /predict
and ``label-factory predict`` do before any model runs); ``--decode-only`` prints just that table.

Per task: a JPEG of the size is fetched over loopback from an allowed host, the worker's peak RSS
(VmHWM) is reset before the request (/proc/PID/clear_refs) and read after it; the growth over its RSS
before the request is reported.  Sides alternate; medians.

    .venv/bin/python benchmarks/predict_budget.py                  # 1920x1080, 4032x3024, 8000x6000
    .venv/bin/python benchmarks/predict_budget.py --quick          # tiny OWLv2, 640x480 + 1920x1080
    .venv/bin/python benchmarks/predict_budget.py --sizes 8000x6000  # some of the sizes
    .venv/bin/python benchmarks/predict_budget.py --decode-only      # the decode step only (seconds)
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import yaml  # noqa: E402

from benchmarks import _qwen  # noqa: E402
from benchmarks._common import fmt_s, log, machine, median, now, print_config, table  # noqa: E402
from benchmarks.predict_overhead import owlv2_dir, serve_files  # noqa: E402

SIZES = [(1920, 1080), (4032, 3024), (8000, 6000)]
QWEN_MAX_PIXELS = 12_845_056  # Qwen/Qwen2.5-VL-*'s preprocessor_config.json


def jpeg(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG (smooth noise: realistic file size; compute does not depend on content)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(size[0])
    small = Image.fromarray(rng.integers(0, 256, (max(1, size[1] // 16), max(1, size[0] // 16), 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize(size, Image.BILINEAR).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def project(out: Path, owl: Path, qwen: Path, budgets: bool) -> Path:
    data = {"project_name": "bench", "target_object": "stop sign", "label": "Stop Sign",
            "stages": {"filter": True, "ground": True, "verify": True},
            "thresholds": {"filter": 0.0, "grounding": 0.0, "verify": 0.0, "max_boxes": 3},
            "providers": {"vlm": {"kind": "transformers", "model": str(qwen), "device": "cpu", "max_batch": 3},
                          "grounder": {"kind": "owlv2", "model": str(owl), "device": "cpu"}}}
    if not budgets:
        data["budgets"] = {k: None for k in ("decode_pixels", "filter_pixels", "ground_pixels", "verify_pixels")}
    out.write_text(yaml.safe_dump(data))
    return out


def worker_pid(master: int) -> int:
    for task in Path(f"/proc/{master}/task").iterdir():
        kids = (task / "children").read_text().split()
        if kids:
            return int(kids[0])
    raise RuntimeError(f"gunicorn master {master} has no worker")


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


DECODE_CHILD = """
import sys
from pathlib import Path
from pipeline.images import open_photo
def status(key):
    return next(int(x.split()[1]) * 1024 for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(key + ":"))
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
photo = open_photo(data, int(sys.argv[2]) or None)
print(status("VmHWM") - base, *photo.pixels.size)
"""


def decode_table(images: Path, sizes) -> str:
    """Peak RSS growth of decoding each photo at full size and at the default working resolution."""
    import subprocess

    from pipeline.config import Budgets
    rows = []
    for w, h in sizes:
        got = {}
        for name, pixels in (("full size", 0), ("working resolution", Budgets().decode_pixels)):
            out = subprocess.run([sys.executable, "-c", DECODE_CHILD, str(images / f"{w}x{h}.jpg"), str(pixels)],
                                 capture_output=True, text=True, check=True).stdout.split()
            got[name] = (int(out[0]) / 2**20, f"{out[1]}x{out[2]}")
        full, work = got["full size"], got["working resolution"]
        rows.append([f"{w}x{h}", full[1], f"{full[0]:,.0f}", work[1], f"{work[0]:,.0f}",
                     f"{full[0] / max(work[0], 1e-9):.1f}x"])
    return table(["photo", "full decode", "peak RSS MiB", "working decode", "peak RSS MiB", "ratio"], rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny OWLv2, small sizes, 1 round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--decode-only", action="store_true", help="only the decode step's table")
    ap.add_argument("--sizes", help="photo sizes to run, e.g. 4032x3024,8000x6000 (default: all three)")
    a = ap.parse_args(argv)
    from pipeline.config import load_project
    from pipeline.labelstudio.labeling_config import labeling_config
    from pipeline.stack.processes import Service, free_port

    t_start = now()
    sizes = [(640, 480), (1920, 1080)] if a.quick else SIZES
    if a.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    rounds = 1 if a.quick else a.rounds
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-budget-"))
    (tmp / "images").mkdir()
    for w, h in sizes:
        (tmp / "images" / f"{w}x{h}.jpg").write_bytes(jpeg((w, h)))
    decoding = decode_table(tmp / "images", sizes)
    print("\ndecode step alone (fresh process per photo):\n" + decoding, flush=True)
    if a.decode_only:
        return
    owl = owlv2_dir("tiny" if a.quick else "base")
    qwen = _qwen.ensure("tiny", QWEN_MAX_PIXELS)
    files = serve_files(tmp / "images")
    host = f"127.0.0.1:{files.server_address[1]}"
    sides = {"with budgets": True, "without budgets": False}
    backends, ports, label_config = {}, {}, None
    try:
        for name, on in sides.items():
            proj = project(tmp / f"{'with' if on else 'without'}.yaml", owl, qwen, on)
            label_config = labeling_config(load_project(proj))
            ports[name] = free_port()
            env = {**os.environ, "PROJECT_CONFIG": str(proj), "MODEL_DIR": str(tmp / f"model-dir-{on}"),
                   "HOST": "127.0.0.1", "PORT": str(ports[name]), "WORKERS": "1", "THREADS": "2",
                   "LOG_LEVEL": "WARNING", "ALLOWED_IMAGE_HOSTS": host, "HF_HUB_OFFLINE": "1", "TIMEOUT": "3600"}
            backends[name] = Service(f"backend ({name})", [sys.executable, "-m", "backends._wsgi"], env,
                                     tmp / f"backend-{on}.log")
        for name, svc in backends.items():
            svc.wait_http(f"http://127.0.0.1:{ports[name]}/health", 600)
        session = requests.Session()

        def predict(name: str, size) -> tuple[float, int, int]:
            pid = worker_pid(backends[name].proc.pid)
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            base = status(pid, "VmRSS")
            body = {"tasks": [{"id": 1, "data": {"image": f"http://{host}/{size[0]}x{size[1]}.jpg"}}],
                    "label_config": label_config, "project": "1.0"}
            t0 = now()
            r = session.post(f"http://127.0.0.1:{ports[name]}/predict", json=body, timeout=7200)
            dt = now() - t0
            r.raise_for_status()
            res = r.json()["results"]
            if not res or "result" not in res[0]:
                raise SystemExit(f"{name}: no prediction for {size}: {r.text[:500]}\n{backends[name].log_tail()}")
            return dt, status(pid, "VmHWM") - base, len(res[0]["result"])

        log("warm-up: one small task per side")
        for name in sides:
            predict(name, sizes[0])
        results: dict[tuple[str, tuple], list[tuple[float, int]]] = {}
        for rnd in range(rounds):
            for i, size in enumerate(sizes):
                order = list(sides) if (rnd + i) % 2 == 0 else list(reversed(sides))
                for name in order:
                    dt, growth, n = predict(name, size)
                    results.setdefault((name, size), []).append((dt, growth))
                    log(f"  round {rnd + 1} {size[0]}x{size[1]} {name}: {dt:.1f} s, peak RSS +{growth / 2**20:.0f} "
                        f"MiB, {n} results")
    finally:
        for svc in backends.values():
            svc.stop()
        files.shutdown()

    from pipeline.config import Budgets
    b = Budgets()
    print_config("predict_budget: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "cascade": "filter -> ground -> verify (3 crops), gates open; POST /predict, 1 task per request, gunicorn "
                   "1 worker x 2 threads per side, image fetched over loopback",
        "models": f"OWLv2 {'tiny test' if a.quick else 'google/owlv2-base-patch16-ensemble'} shape; tiny Qwen2.5-VL "
                  f"with the published preprocessor (max {QWEN_MAX_PIXELS:,} px); random weights",
        "with budgets": f"defaults: decode {b.decode_pixels:,}, filter {b.filter_pixels:,}, ground "
                        f"{b.ground_pixels:,}, verify {b.verify_pixels:,} px",
        "without budgets": "every budget null: full resolution to every stage",
        "peak RSS": "the worker's VmHWM growth over its RSS before the request (reset per request)",
        "timing": f"{rounds} round(s), sides alternating; medians. The machine is shared with other engineers "
                  f"running tests (load average at the end: {os.getloadavg()[0]:.1f})",
        **machine(),
    })
    rows = []
    for size in sizes:
        with_s = median(x[0] for x in results[("with budgets", size)])
        for name in sides:
            xs = results[(name, size)]
            s, mem = median(x[0] for x in xs), median(x[1] for x in xs) / 2**20
            rows.append([f"{size[0]}x{size[1]}", name, len(xs), fmt_s(s), f"{mem:,.0f}",
                         "1.00x" if name == "with budgets" else f"{s / with_s:.2f}x"])
    print("\ndecode step alone (fresh process per photo):\n" + decoding)
    print("\n" + table(["photo", "side", "tasks", "median s/task", "peak RSS growth MiB", "time vs budgets"], rows))
    print(f"\nwall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
