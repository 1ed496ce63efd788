"""The rest of the fast path, each piece measured side by side on a real-shape model: what the providers should
keep, and what does not pay here.

OWLv2 (google/owlv2-base-patch16-ensemble shape, 960 px, 3 queries, the processor's inputs made once; the model's
forward timed):

* attention: SDPA (transformers' default, what the providers get) vs eager, switched on the same model;
* ``torch.inference_mode`` (the providers') vs ``torch.no_grad``;
* torch intra-op threads: 1 vs the physical cores (``hardware.default_threads``);
* ``torch.compile``: its first call (compilation included) and its steady call vs eager, and the number of
  calls after which it has paid for its compilation.

Falcon-Perception 0.6B shape at max_dimension 512, projects/drones.yaml's 4 queries: in one batched generation
(``FalconGrounder.batch_size`` 4, the provider's default) vs one query per generation (batch 1); generation
stops after ``cost.FALCON_DECODE_STEPS`` steps (``falcon_cpu.ScriptedTokens``).

Qwen2.5-VL-3B shape (``--models qwen``): SDPA vs eager on one verify crop (448 px, 256 image tokens), one
model switched between them. Verify batch 1 vs 8 is benchmarks/verify_batch.py.

    .venv/bin/python benchmarks/fast_path.py                   # owlv2, falcon, qwen
    .venv/bin/python benchmarks/fast_path.py --models owlv2 --rounds 4
    .venv/bin/python benchmarks/fast_path.py --quick           # tiny models (smoke)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import fmt_s, interleaved, log, now, peak_rss_mib, table  # noqa: E402

OWL_QUERIES = ["stop sign", "car", "traffic light"]
FALCON_QUERIES = ["fiber-optic drone", "drone with a cable spool", "FPV drone", "cable spool"]


def row(model: str, what: str, a: str, b: str, secs: dict, note: str = "") -> list:
    return [model, what, f"{a} {fmt_s(secs[a])}", f"{b} {fmt_s(secs[b])}", f"{secs[a] / secs[b]:.2f}x", note]


def bench_owlv2(path: str, device: str, rounds: int, compile_: bool, name: str) -> list[list]:
    import torch

    from benchmarks.dtype_accuracy import photo
    from pipeline.hardware import default_threads, synchronize, to_model
    from pipeline.images import Photo
    from pipeline.providers.hf_detectors import OWLv2Grounder
    g = OWLv2Grounder(path, device=device, dtype="fp32")
    view = Photo.of(photo()).view(1024 * 1024).image
    max_len = g.model.config.text_config.max_position_embeddings

    def process():
        return to_model(g.processor(text=[OWL_QUERIES], images=view, return_tensors="pt", padding="max_length",
                                    max_length=max_len, truncation=True), g.device)
    process()  # its first call pays for imports and set-up
    t = now()
    inputs = process()
    processor_s = now() - t
    model = g.model
    rows = []

    def forward(m=model, mode=torch.inference_mode):
        with mode():
            return m(**inputs)

    def attn(impl):
        def go():
            model.set_attn_implementation(impl)
            forward()
        return go
    secs = interleaved({"sdpa": attn("sdpa"), "eager": attn("eager")}, rounds, device)
    model.set_attn_implementation("sdpa")
    rows.append(row(name, "attention", "eager", "sdpa", secs,
                    f"the processor's inputs, made once: {processor_s:.2f} s"))
    log("  " + " | ".join(rows[-1]))
    secs = interleaved({"no_grad": lambda: forward(mode=torch.no_grad), "inference_mode": forward}, rounds, device)
    rows.append(row(name, "autograd off", "no_grad", "inference_mode", secs))
    cores, before = default_threads(), torch.get_num_threads()

    def threads(n):
        def go():
            torch.set_num_threads(n)
            forward()
        return go
    if cores > 1:
        secs = interleaved({"1 thread": threads(1), f"{cores} threads": threads(cores)}, rounds, device)
        rows.append(row(name, "intra-op threads", "1 thread", f"{cores} threads", secs,
                        f"physical cores: {cores}"))
    torch.set_num_threads(before)
    if compile_:
        compiled = torch.compile(model)
        synchronize(device)
        t = now()
        forward(compiled)
        synchronize(device)
        first = now() - t
        secs = interleaved({"eager": forward, "compiled": lambda: forward(compiled)}, rounds, device, warmup=False)
        gain = secs["eager"] - secs["compiled"]
        paid = f"pays for its compilation after {first / gain:.0f} calls" if gain > 0 else "never pays: not faster"
        rows.append(row(name, "torch.compile (inductor)", "eager", "compiled", secs,
                        f"first compiled call {first:.0f} s; {paid}"))
    return rows


def bench_falcon(path: str, device: str, rounds: int, name: str) -> list[list]:
    from benchmarks.dtype_accuracy import photo
    from benchmarks.falcon_cpu import ScriptedTokens
    from pipeline.config import GrounderProvider
    from pipeline.cost import FALCON_DECODE_STEPS
    from pipeline.images import Photo
    from pipeline.providers.falcon import FalconGrounder
    g = FalconGrounder.from_config(GrounderProvider(model=path, backend="torch", device=device, dtype="fp32",
                                                    max_new_tokens=FALCON_DECODE_STEPS, max_dimension=512))
    ScriptedTokens.install(g, FALCON_DECODE_STEPS)
    view = Photo.of(photo()).view(1024 * 1024).image

    def batch(n):
        def go():
            g.batch_size = n
            g.boxes(view, FALCON_QUERIES)
        return go
    secs = interleaved({"batch 1": batch(1), "batch 4": batch(4)}, rounds, device)
    return [row(name, f"{len(FALCON_QUERIES)} queries per photo", "batch 1", "batch 4", secs,
                f"{FALCON_DECODE_STEPS} decode steps per query")]


def bench_qwen(path: str, device: str, rounds: int, name: str) -> list[list]:
    from benchmarks.dtype_accuracy import photo
    from pipeline.providers.transformers_vlm import TransformersVLM
    vlm = TransformersVLM(path, device=device, max_batch=1, dtype="fp32")
    crop = photo((448, 448), seed=3)
    question = "Is this a stop sign? Answer YES or NO."

    def attn(impl):
        def go():
            vlm.model.set_attn_implementation(impl)
            vlm.yes_probabilities([crop], question)
        return go
    secs = interleaved({"sdpa": attn("sdpa"), "eager": attn("eager")}, rounds, device)
    tokens = int((vlm._inputs([crop], question)["input_ids"] == vlm.model.config.image_token_id).sum())
    return [row(name, "attention (vision + LLM)", "eager", "sdpa", secs,
                f"one 448x448 crop, {tokens} image tokens")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="owlv2,falcon,qwen")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    ap.add_argument("--quick", action="store_true", help="tiny models (smoke)")
    a = ap.parse_args(argv)
    import torch

    from benchmarks.photo_cost import cpu_line, model_paths, uptime
    t_start, load0 = now(), uptime()
    if a.quick:
        import falcon_perception

        from pipeline.tiny.falcon import tiny_model_args
    p = model_paths(a.quick)
    if a.quick:
        falcon_perception.get_model_args = lambda variant: tiny_model_args(p["falcon"])
    rows = []
    for m in a.models.split(","):
        log(f"{m} ...")
        if m == "owlv2":
            rows += bench_owlv2(p["owlv2"], a.device, a.rounds, a.compile,
                                "OWLv2-tiny" if a.quick else "OWLv2-base @960")
        elif m == "falcon":
            rows += bench_falcon(p["falcon"], a.device, a.rounds, "Falcon tiny" if a.quick else "Falcon 0.6B @512")
        elif m == "qwen":
            rows += bench_qwen(p["vlm"], a.device, a.rounds, "Qwen2.5-VL tiny" if a.quick else "Qwen2.5-VL 3B")
        else:
            raise SystemExit(f"unknown model {m!r}")
        for r in rows:
            log("  " + " | ".join(r))
    print("\n## fast_path: configuration")
    print(f"- command: python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}")
    print(f"- CPU: {cpu_line()}")
    print(f"- torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}, fp32; "
          f"{'tiny test models (smoke only)' if a.quick else 'published shapes'}, random weights")
    print(f"- timing: one warm-up per side, then {a.rounds} rounds, sides alternating; medians; load (uptime) "
          f"before / after: {load0} / {uptime()}")
    print("\n" + table(["model", "what", "baseline s/call", "fast path s/call", "speed-up", "note"], rows))
    print(f"\npeak RSS: {peak_rss_mib() / 1024:.1f} GiB; wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
