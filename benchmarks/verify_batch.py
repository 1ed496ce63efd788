"""Verify K=8 crops in ONE batched call vs 8 single calls, same TransformersVLM object (max_batch=8),
measured interleaved in one run.

The batched call is exactly what pipeline.stages.verify makes (``vlm.yes_probabilities(crops, question)``:
one left-padded forward pass over all crops); the baseline asks ``vlm.yes_probabilities([crop], q)`` once
per crop.

    .venv/bin/python benchmarks/verify_batch.py            # Qwen2.5-VL-3B shape, 8 crops of 112x112
    .venv/bin/python benchmarks/verify_batch.py --quick    # tiny model, seconds (sanity only)

Goal from issue 6: speed-up >= 0.8 x K (6.4x for K=8) where the provider can batch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _qwen  # noqa: E402
from benchmarks._common import fmt_s, log, machine, median, noise_images, now, peak_rss_mib, print_config, table, timed  # noqa: E402

QUESTION = "Is this a stop sign? Answer YES or NO."  # pipeline's default verify prompt form


def crops(n: int, size: int):
    return noise_images(n, size, seed=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(_qwen.ARCHS), default=None, help="default 3b (tiny with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny model, 3 repeats")
    ap.add_argument("-k", type=int, default=8, help="crops per verify call (default 8)")
    ap.add_argument("--crop-size", type=int, default=112, help="crop side in px (default 112 -> 16 image tokens)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--max-pixels", type=int, default=224 * 224, help="processor image budget (model dir key)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-warmup-batch", dest="warmup_batch", action="store_false",
                    help="skip the batched warm-up call (its first call pays one-time allocation costs)")
    a = ap.parse_args(argv)
    arch = a.arch or ("tiny" if a.quick else "3b")
    if a.quick:
        a.repeats = 3
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    from pipeline.providers.transformers_vlm import TransformersVLM

    t_start = now()
    path = _qwen.ensure(arch, max_pixels=a.max_pixels)
    log(f"loading {path.name} through TransformersVLM(max_batch={a.k}) ...")
    load_s, vlm = timed(TransformersVLM, str(path), device="cpu", max_batch=a.k)
    cs = crops(a.k, a.crop_size)
    one = vlm._inputs(cs[:1], QUESTION)
    prompt_tokens = int(one["input_ids"].shape[1])
    image_tokens = int((one["input_ids"] == vlm.model.config.image_token_id).sum())

    log("warm-up: one single-crop call" + (" + one batched call" if a.warmup_batch else ""))
    vlm.yes_probabilities(cs[:1], QUESTION)
    if a.warmup_batch:  # the first call of a new batch shape pays one-time costs: keep it out of the timings
        vlm.yes_probabilities(cs, QUESTION)

    t_batch, t_single = [], []
    diffs = []
    for r in range(a.repeats):  # alternate which side goes first
        for what in (("batch", "single") if r % 2 == 0 else ("single", "batch")):
            if what == "batch":
                dt, res_b = timed(vlm.yes_probabilities, cs, QUESTION)
                assert len(res_b) == a.k
                t_batch.append(dt)
            else:
                t0 = now()
                res_s = [vlm.yes_probabilities([c], QUESTION)[0] for c in cs]
                dt = now() - t0
                t_single.append(dt)
            log(f"  round {r + 1} {what}: {dt:.2f} s")
        diffs.append(max(abs(b.p_yes - s.p_yes) for b, s in zip(res_b, res_s)))

    m_b, m_s = median(t_batch), median(t_single)
    speedup, goal = m_s / m_b, 0.8 * a.k
    info = _qwen.build_info(path)
    print_config("verify_batch: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": f"{_qwen.ARCH_NAMES[arch]}; {info['params'] / 1e9:.3f} B params; "
                 f"loaded by TransformersVLM (fp32 on CPU, its default), max_batch={a.k}",
        "crops": f"K={a.k} random-noise RGB {a.crop_size}x{a.crop_size} (same size: no padding waste) -> "
                 f"{image_tokens} image tokens, {prompt_tokens} prompt tokens per crop",
        "question": QUESTION,
        "batched": f"vlm.yes_probabilities(crops) = 1 forward over {a.k} rows (what stages.verify calls)",
        "single": f"{a.k} x vlm.yes_probabilities([crop]) = {a.k} forwards of 1 row",
        "timing": f"warm-up: 1 single call{' + 1 batched call' if a.warmup_batch else ''}; then {a.repeats} "
                  f"rounds, alternating which side goes first; median per round",
        "consistency": f"max |p_yes(batched) - p_yes(single)| = {max(diffs):.1e} (numerical agreement only)",
        **machine(),
    })
    print("\n" + table(
        ["method", "rounds", f"median s / {a.k} crops", "s / crop", "speed-up vs single", f"goal (0.8x{a.k})"],
        [[f"{a.k} single calls", len(t_single), fmt_s(m_s), fmt_s(m_s / a.k), "1.00x", ""],
         [f"1 batched call of {a.k}", len(t_batch), fmt_s(m_b), fmt_s(m_b / a.k), f"{speedup:.2f}x",
          f"{goal:.1f}x {'met' if speedup >= goal else 'NOT met'}"]]))
    print(f"\nspeed-up by minimums: {min(t_single) / min(t_batch):.2f}x; per round: "
          + ", ".join(f"{s_ / b_:.2f}x" for s_, b_ in zip(t_single, t_batch)))
    print(f"model load: {load_s:.1f} s; peak RSS: {peak_rss_mib() / 1024:.2f} GiB; wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
