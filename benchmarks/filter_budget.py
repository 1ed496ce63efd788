"""Image tokens and seconds per filter call on the Qwen2.5-VL-3B shape at real photo sizes, with and without
the filter's pixel budget, in one run.

The filter stage (``pipeline.stages.filter_image``) asks ``TransformersVLM`` (one forward pass, fp32 on the
CPU) about a JPEG of each size decoded by ``pipeline.images.open_photo``; the model dir keeps Qwen2.5-VL's
PUBLISHED preprocessor settings (min 3,136 / max 12,845,056 px), random weights (benchmarks/_qwen.py).

* with the budget: ``budgets.filter_pixels`` (default 802,816 px ~ 1,024 tokens) -> the model sees a view;
* without: the full image, as before the budgets (the processor itself caps it at 12.8 MP).

Image tokens are counted from the processor's output for every case.  A call without the budget is only run
when its tokens are at most ``--max-unbudgeted-tokens`` (default 3,000: 1920x1080's 2,691); bigger ones
would take tens of minutes to hours on 2 cores and are reported as the cost model's estimate
(``pipeline.cost``, calibrated by the calls measured here), marked as such.

Needs ~21 GiB free (fp32 3B weights + activations): it refuses to start with less (``--min-free-gib``), as the
machine is shared.

    .venv/bin/python benchmarks/filter_budget.py
    .venv/bin/python benchmarks/filter_budget.py --quick      # tiny model, sanity only
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _qwen  # noqa: E402
from benchmarks._common import fmt_s, log, machine, median, now, peak_rss_mib, print_config, table  # noqa: E402
from benchmarks.predict_budget import QWEN_MAX_PIXELS, SIZES, jpeg  # noqa: E402

QUESTION = "Does this image show a stop sign? Answer YES or NO."


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model")
    ap.add_argument("--rounds", type=int, default=1, help="calls per (size, side) (default 1)")
    ap.add_argument("--max-unbudgeted-tokens", type=int, default=3000)
    ap.add_argument("--min-free-gib", type=float, default=21.0)
    a = ap.parse_args(argv)
    arch = "tiny" if a.quick else "3b"
    if not a.quick and mem_available_gib() < a.min_free_gib:
        raise SystemExit(f"only {mem_available_gib():.1f} GiB available, the 3B run needs ~{a.min_free_gib:.0f}: "
                         "try again at a quieter moment (or lower --min-free-gib at your own risk)")
    from pipeline import cost
    from pipeline.config import Budgets
    from pipeline.images import Photo, open_photo
    from pipeline.providers.transformers_vlm import TransformersVLM
    from pipeline.stages import filter_image

    t_start = now()
    budgets = Budgets()
    path = _qwen.ensure(arch, QWEN_MAX_PIXELS)
    log(f"loading {path.name} through TransformersVLM ...")
    vlm = TransformersVLM(str(path), device="cpu", max_batch=1)
    tokens_seen: list[int] = []
    real_inputs = vlm._inputs

    def counting_inputs(images, question):  # benchmark instrumentation: image tokens of each call
        inputs = real_inputs(images, question)
        tokens_seen.append(int((inputs["input_ids"] == vlm.model.config.image_token_id).sum()))
        return inputs
    vlm._inputs = counting_inputs

    photos = {(224, 224): Photo.of(jpeg_image((224, 224)))}
    for size in SIZES:
        photos[size] = open_photo(jpeg(size), budgets.decode_pixels if not a.quick else None)
    full = {size: open_photo(jpeg(size), None) for size in SIZES}
    conf = cost._config_json(str(path))

    def call(size, budgeted: bool) -> tuple[float, int]:
        photo = photos[size] if budgeted else full.get(size, photos[size])
        t0 = now()
        filter_image(vlm, photo, QUESTION, 0.5, budgets.filter_pixels if budgeted else None)
        return now() - t0, tokens_seen[-1]

    log("warm-up: one 224 px call")
    call((224, 224), True)
    measured: dict[tuple, list[float]] = {}
    tokens: dict[tuple, int] = {}
    plan = [((224, 224), True)] + [(s, b) for s in SIZES for b in (True, False)]
    for rnd in range(a.rounds):
        for size, budgeted in (plan if rnd % 2 == 0 else list(reversed(plan))):
            if not budgeted:
                probe = vlm.processor.image_processor(images=[full[size].pixels], return_tensors="pt")
                t, h, w = probe["image_grid_thw"][0].tolist()
                tokens[(size, False)] = t * h * w // 4
                if tokens[(size, False)] > a.max_unbudgeted_tokens:
                    continue
            dt, n = call(size, budgeted)
            tokens[(size, budgeted)] = n
            measured.setdefault((size, budgeted), []).append(dt)
            log(f"  {size[0]}x{size[1]} {'with' if budgeted else 'without'} budget: {n} image tokens, {dt:.1f} s")

    # calibrate the cost model on the measured calls, then estimate the ones not run
    ratio = median(median(v) / cost.qwen_vl_flops(conf, tokens[k]) for k, v in measured.items())
    print_config("filter_budget: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": f"{_qwen.ARCH_NAMES[arch]}, preprocessor max {QWEN_MAX_PIXELS:,} px, fp32 on the CPU "
                 "(TransformersVLM), one forward per filter call",
        "budget": f"budgets.filter_pixels = {budgets.filter_pixels:,} (default); decode_pixels "
                  f"{budgets.decode_pixels:,}",
        "images": "photo-like JPEGs decoded by open_photo; 224 px = the old README's figure",
        "timing": f"1 warm-up, then {a.rounds} call(s) per case, order alternating per round; medians. The machine "
                  f"is shared with other engineers running tests (load average at the end: {os.getloadavg()[0]:.1f})",
        "estimated rows": f"not run (over {a.max_unbudgeted_tokens:,} tokens): FLOPs (pipeline.cost.qwen_vl_flops) x "
                          f"the measured calls' median s/FLOP ({ratio * 1e12:.1f} s per TFLOP)",
        **machine(),
    })
    base = median(measured[((224, 224), True)])
    rows = []
    for size, budgeted in plan:
        k = (size, budgeted)
        if k in measured:
            s, how = median(measured[k]), "measured"
        else:
            s, how = ratio * cost.qwen_vl_flops(conf, tokens[k]), "ESTIMATED"
        rows.append([f"{size[0]}x{size[1]}", "filter_pixels" if budgeted else "none (full image)",
                     f"{tokens[k]:,}", f"{tokens[k] / tokens[((224, 224), True)]:.0f}x", fmt_s(s), how,
                     f"{s / base:.0f}x"])
    print("\n" + table(["photo", "budget", "image tokens", "tokens vs 224 px", "s / filter call", "", "vs 224 px"],
                       rows))
    print(f"\npeak RSS: {peak_rss_mib() / 1024:.2f} GiB; wall time: {now() - t_start:.0f} s")


def jpeg_image(size):
    from PIL import Image
    return Image.open(io.BytesIO(jpeg(size))).convert("RGB")


if __name__ == "__main__":
    main()
