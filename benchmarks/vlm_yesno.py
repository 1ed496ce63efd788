"""YES/NO from ONE forward pass (TransformersVLM.yes_probabilities, next-token logits) vs generating a
short greedy text answer (TransformersVLM.generate_answer), same model, same images, same question,
measured interleaved in one run.

    .venv/bin/python benchmarks/vlm_yesno.py            # Qwen2.5-VL-3B shape, 224x224 images
    .venv/bin/python benchmarks/vlm_yesno.py --quick    # tiny model, seconds (sanity only)

Random weights almost never emit EOS, so generate_answer produces all --max-new-tokens tokens (the
script counts them and prints the count).  Goal from issue 6: logits path >= 3x faster.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _qwen  # noqa: E402
from benchmarks._common import fmt_s, log, machine, median, noise_images, now, peak_rss_mib, print_config, table, timed  # noqa: E402

QUESTION = "Does this image show a stop sign? Answer YES or NO."  # pipeline's default filter prompt form


def images(n: int, size: int):
    return noise_images(n, size, seed=0)


def count_generated(vlm) -> list[int]:
    """Wrap this provider object's model.generate (benchmark-only instrumentation) to count new tokens."""
    counts: list[int] = []
    orig = vlm.model.generate

    def generate(*a, **kw):
        seq = orig(*a, **kw)
        counts.append(int(seq.shape[1] - kw["input_ids"].shape[1]))
        return seq
    vlm.model.generate = generate
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(_qwen.ARCHS), default=None, help="default 3b (tiny with --quick)")
    ap.add_argument("--quick", action="store_true", help="tiny model, 1 image, 2 repeats")
    ap.add_argument("--images", type=int, default=2, help="distinct images (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the images (default 3)")
    ap.add_argument("--size", type=int, default=224, help="image side in px (default 224 -> 64 image tokens)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    a = ap.parse_args(argv)
    arch = a.arch or ("tiny" if a.quick else "3b")
    if a.quick:
        a.images, a.repeats = 1, 2
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    from pipeline.providers.transformers_vlm import TransformersVLM

    t_start = now()
    path = _qwen.ensure(arch, max_pixels=a.size * a.size)
    log(f"loading {path.name} through TransformersVLM ...")
    load_s, vlm = timed(TransformersVLM, str(path), device="cpu", max_batch=1)
    counts = count_generated(vlm)
    imgs = images(a.images, a.size)
    inputs = vlm._inputs(imgs[:1], QUESTION)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    image_tokens = int((inputs["input_ids"] == vlm.model.config.image_token_id).sum())

    log("warm-up: one logits pass + one generate")
    vlm.yes_probabilities(imgs[:1], QUESTION)
    vlm.generate_answer(imgs[0], QUESTION, max_new_tokens=a.max_new_tokens)
    counts.clear()

    t_logits, t_gen = [], []
    for r in range(a.repeats):  # interleaved, alternating order, so machine drift hits both sides
        for i, im in enumerate(imgs):
            order = ("logits", "generate") if (r + i) % 2 == 0 else ("generate", "logits")
            for what in order:
                if what == "logits":
                    dt, res = timed(vlm.yes_probabilities, [im], QUESTION)
                    assert res[0].method == "logits"
                    t_logits.append(dt)
                else:
                    dt, _ = timed(vlm.generate_answer, im, QUESTION, max_new_tokens=a.max_new_tokens)
                    t_gen.append(dt)
                log(f"  repeat {r + 1} image {i + 1} {what}: {dt:.2f} s")

    m_l, m_g = median(t_logits), median(t_gen)
    info = _qwen.build_info(path)
    print_config("vlm_yesno: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": f"{_qwen.ARCH_NAMES[arch]}; {info['params'] / 1e9:.3f} B params; "
                 f"saved bf16 at {path}, loaded by TransformersVLM (fp32 on CPU, its default)",
        "images": f"{a.images} random-noise RGB {a.size}x{a.size} -> {image_tokens} image tokens; "
                  f"prompt {prompt_tokens} tokens incl. chat template",
        "question": QUESTION,
        "logits path": "TransformersVLM.yes_probabilities([image]) = one forward, logits_to_keep=1",
        "generate path": f"TransformersVLM.generate_answer(image, max_new_tokens={a.max_new_tokens}), greedy; "
                         f"tokens generated per call: {sorted(set(counts))} (random weights rarely emit EOS)",
        "timing": f"1 warm-up call each, then {a.repeats} x {a.images} timed calls each, interleaved; median",
        **{k: v for k, v in machine().items()},
    })
    paired = median(g / l for g, l in zip(t_gen, t_logits))  # same image, adjacent calls
    print("\n" + table(
        ["method", "calls", "median s/call", "min s", "max s", "ratio (medians)", "ratio (mins)"],
        [["YES/NO from one forward (logits)", len(t_logits), fmt_s(m_l), fmt_s(min(t_logits)),
          fmt_s(max(t_logits)), "1.00x", "1.00x"],
         [f"generate {a.max_new_tokens} tokens (text answer)", len(t_gen), fmt_s(m_g), fmt_s(min(t_gen)),
          fmt_s(max(t_gen)), f"{m_g / m_l:.2f}x slower", f"{min(t_gen) / min(t_logits):.2f}x slower"]]))
    print(f"\nspeed-up of the logits path: {m_g / m_l:.2f}x by medians, {min(t_gen) / min(t_logits):.2f}x by "
          f"minimums, {paired:.2f}x median of per-image pairs (goal >= 3x: {'met' if m_g / m_l >= 3 else 'NOT met'})")
    print(f"model load through TransformersVLM: {load_s:.1f} s; peak RSS: {peak_rss_mib() / 1024:.2f} GiB; "
          f"wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
