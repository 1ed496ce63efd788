"""`label-factory doctor`: what this machine is and what a project will cost on it, before anything runs.

It prints the CPU (model, the instruction-set flags inference cares about, physical cores), memory, the
GPUs torch sees, torch's version and threads, the measured matmul speed per dtype, the dtype each of the
project's torch models will run in and why (``pipeline.hardware``), and the expected seconds per photo
(``pipeline.cost``) as configured and, when that differs, all in fp32. It loads no model and sends nothing
over the network."""
from __future__ import annotations

import argparse
import json
import sys


def report(project_path: str) -> dict:
    import torch

    from pipeline import cost, hardware
    from pipeline.config import load_project
    from pipeline.model_version import dtype_choices, model_version
    cfg = load_project(project_path)
    m = hardware.machine()
    choices = dtype_choices(cfg)
    rates = hardware.matmul_rates("cpu", ("fp32", "bf16"))
    est = cost.estimate(cfg)
    out = {"machine": m.describe(),
           "torch": {"version": torch.__version__, "threads": torch.get_num_threads(),
                     "cuda": torch.version.cuda if torch.cuda.is_available() else None},
           "cpu_matmul_gflops": {d: round(r, 1) for d, r in rates.items()},
           "dtypes": {role: {"dtype": c.dtype, "reason": c.reason} for role, c in choices.items()},
           "model_version": model_version(cfg),
           "estimate": {"per_image_seconds": round(est.per_image, 1), "complete": est.known, "summary": est.summary()}}
    if cfg.providers.vlm.kind == "openai" and (cfg.stages.filter or cfg.stages.verify):
        out["dtypes"] = {"vlm": {"dtype": "server", "reason": f"served by {cfg.providers.vlm.url}: the server's own"},
                         **out["dtypes"]}
    if est.rates and any(c.dtype != "fp32" for c in choices.values()):
        data = cfg.model_dump(mode="json", by_alias=False)
        for prov in data["providers"].values():
            if isinstance(prov, dict) and "dtype" in prov:
                prov["dtype"] = "fp32"
        from pipeline.config import parse_project
        fp32 = cost.estimate(parse_project(data))
        out["estimate_fp32"] = {"per_image_seconds": round(fp32.per_image, 1), "summary": fp32.summary()}
    return out


def _print(r: dict) -> None:
    m = r["machine"]
    print(f"CPU      {m['cpu']} ({m['arch']}), {m['physical_cores']} physical / {m['logical_cores']} logical cores")
    print(f"flags    {' '.join(m['flags']) or '(none of interest)'}")
    print(f"memory   {m['memory_gb']} GiB")
    gpus = ", ".join(f"{g['name']} (sm {g['capability']}, {g['memory_gb']} GiB, bf16 {'yes' if g['bf16'] else 'no'})"
                     for g in m["gpus"]) or ("Apple GPU (MPS)" if m["mps"] else "none")
    print(f"GPUs     {gpus}")
    t = r["torch"]
    print(f"torch    {t['version']}, {t['threads']} intra-op threads" + (f", CUDA {t['cuda']}" if t["cuda"] else ""))
    print("matmul   " + ", ".join(f"{d} {v:.0f} GFLOP/s" for d, v in r["cpu_matmul_gflops"].items()) + " (CPU, 1024³)")
    print("dtypes")
    for role, c in r["dtypes"].items():
        print(f"  {role:10s} {c['dtype']:5s} {c['reason']}")
    print(f"model_version  {r['model_version']}")
    print(r["estimate"]["summary"])
    if "estimate_fp32" in r:
        print(f"all in fp32: ~{r['estimate_fp32']['per_image_seconds']} s per image")


def cmd_doctor(args) -> int:
    r = report(args.project)
    if args.json:
        json.dump(r, sys.stdout, indent=2)
        print()
    else:
        _print(r)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("doctor", help="this machine (CPU flags, cores, GPUs), the dtype each model of the project "
                                      "will use and why, and the expected seconds per photo")
    s.add_argument("--project", default="projects/stop-signs.yaml")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_doctor)
