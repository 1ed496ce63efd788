"""Falcon Perception on a Linux CPU: the torch path (pipeline.providers.falcon_cpu) vs the package's MLX path,
same random weights with the PUBLISHED architecture, one 1280x960 image, one query, in one run.

Both sides load the same export dir through ``FalconGrounder.from_config`` (the package's own loaders) and
answer ``FalconGrounder.boxes(image, [query])``; calls alternate between the sides.  Random weights never emit
end-of-text (the package then decodes to the next multiple of 128 tokens), so a call is timed in parts: the
model calls are timestamped, the first one (with sampling until the second) is the prefill, and after
``--decode-steps`` decode steps the call is cut short.  Seconds per query are reported as prefill +
FALCON_DECODE_STEPS (pipeline.cost: what a real model emits for a few objects) x the median decode step.

    .venv/bin/python benchmarks/falcon_cpu.py --variant 300m                   # torch vs MLX, 1024 px
    .venv/bin/python benchmarks/falcon_cpu.py --variant 0.6b
    .venv/bin/python benchmarks/falcon_cpu.py --sides torch --max-dimension 1024 768 640 512
    .venv/bin/python benchmarks/falcon_cpu.py --quick                          # tiny model, sanity only

The export dir (model.safetensors in the torch layout, a small local tokenizer, config.json that the package's
variant detection reads) is built once under ~/.cache/label-factory-bench/.  Token ids only select embedding
rows, so the small tokenizer does not change compute.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import CACHE, fmt_s, log, machine, median, now, peak_rss_mib, print_config, table  # noqa: E402

VARIANTS = {"0.6b": ("perception", "tiiuae/Falcon-Perception (0.6B)"),
            "300m": ("perception-300m", "tiiuae/Falcon-Perception-300M")}
QUERY = "drone"


def export_dir(variant: str) -> Path:
    """A random-weight export with the published shape of ``variant`` (built once)."""
    import torch
    from falcon_perception import get_model_args, get_tokenizer
    from falcon_perception.model import FalconPerception
    from safetensors.torch import save_file

    from pipeline.tiny.falcon import _tokenizer

    name, _ = VARIANTS[variant]
    out = CACHE / f"falcon-{name}-random-v1"
    if (out / "model.safetensors").exists():
        return out
    log(f"building a random-weight {name} export in {out} ...")
    out.mkdir(parents=True, exist_ok=True)
    _tokenizer(out)
    args = get_model_args(name)
    args.update(get_tokenizer(str(out)))
    torch.manual_seed(0)
    model = FalconPerception(args)
    with torch.no_grad():  # parameters the package leaves uninitialised (torch.empty)
        for layer in model.layers.values():
            layer.attention.sinks.normal_(0, 1)
        model.freqs_cis_golden.normal_(0, 0.1)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "freqs_cis"}
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["FalconPerceptionForSegmentation"], "model_type": "falcon_perception",
        "do_segmentation": args.do_segmentation}))
    return out


def photo(width: int = 1280, height: int = 960):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


class _Enough(Exception):
    """Raised from inside generation once enough decode steps are timed."""


class TimedModel:
    """Stands in for the engine's model: timestamps each call, stops generation after ``steps`` decode steps."""

    def __init__(self, model, steps: int):
        self._model, self._steps, self.stamps = model, steps, []

    def __call__(self, *args, **kwargs):
        self.stamps.append(now())
        if len(self.stamps) > self._steps + 1:
            raise _Enough()
        return self._model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class ScriptedTokens:
    """Stands in for the engine's model: every forward pass is the model's own, but the token each call's
    logits pick is steered: ``<coord>``, ``<size>`` pairs (one object each; the box heads' own outputs give the
    boxes), and the end token after ``steps`` decode steps, as a trained model ends a short answer. Random
    weights otherwise never stop (the package then decodes to its next 128-token block)."""

    def __init__(self, model, args, stop_id: int, steps: int):
        self._model, self._stop, self._steps, self.emitted = model, stop_id, steps, 0
        self._script = [args.coord_token_id, args.size_token_id]

    @classmethod
    def install(cls, grounder, steps: int) -> "ScriptedTokens":
        engine = grounder.engine
        engine.model = cls(engine.model, grounder.model_args, grounder.stop_token_ids[0], steps)
        return engine.model

    def __call__(self, *args, **kwargs):
        logits, hidden = self._model(*args, **kwargs)
        if kwargs.get("pixel_values") is not None:  # the prefill: its logits choose the first new token
            self.emitted = 0
        want = self._stop if self.emitted >= self._steps - 1 else self._script[self.emitted % 2]
        self.emitted += 1
        logits = logits.clone()
        logits[:, -1, want] = logits[:, -1].max() + 100
        return logits, hidden

    def __getattr__(self, name):
        return getattr(self._model, name)


def timed_query(grounder, image, steps: int) -> tuple[float, list[float]]:
    """(prefill seconds, [seconds per decode step]) for one query."""
    from pipeline.providers.base import ProviderError
    engine = grounder.engine
    timed = TimedModel(engine.model, steps)
    engine.model = timed
    try:
        grounder.boxes(image, [QUERY])
    except ProviderError as e:
        if not isinstance(e.__cause__, _Enough):
            raise
    finally:
        engine.model = timed._model
    t = timed.stamps
    return t[1] - t[0], [b - a for a, b in zip(t[1:], t[2:])]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="300m")
    ap.add_argument("--sides", nargs="+", choices=["torch", "mlx"], default=["torch", "mlx"])
    ap.add_argument("--max-dimension", type=int, nargs="+", default=[1024])
    ap.add_argument("--decode-steps", type=int, default=4, help="decode steps timed per call (default 4)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-warmup", action="store_true", help="skip the uncounted first call per side and size")
    ap.add_argument("--quick", action="store_true", help="tiny model (sanity only)")
    a = ap.parse_args(argv)
    from pipeline.config import GrounderProvider
    from pipeline.cost import FALCON_DECODE_STEPS
    from pipeline.providers.falcon import FalconGrounder, image_tokens

    t_start = now()
    if a.quick:
        import falcon_perception

        from pipeline.tiny.falcon import build, tiny_model_args
        path = CACHE / "falcon-tiny"
        if not (path / "model.safetensors").exists():
            build(path)
        falcon_perception.get_model_args = lambda variant: tiny_model_args(path)
        a.max_dimension, a.rounds = [256], 1
    else:
        path = export_dir(a.variant)
    image = photo()
    grounders = {}
    for side in a.sides:
        log(f"loading {path.name} on {side} ...")
        t0 = now()
        grounders[side] = FalconGrounder.from_config(GrounderProvider(model=str(path), backend=side, device="cpu"))
        log(f"  loaded in {now() - t0:.0f} s")
    prefill: dict[tuple[str, int], list[float]] = {}
    steps: dict[tuple[str, int], list[float]] = {}
    for md in a.max_dimension:
        for g in grounders.values():
            g.max_dimension = md
        for r in range(1 if a.no_warmup else 0, a.rounds + 1):  # round 0: warm-up, not counted
            order = list(grounders) if r % 2 == 0 else list(reversed(grounders))
            for side in order:
                p, st = timed_query(grounders[side], image, a.decode_steps)
                log(f"  {'warm-up' if r == 0 else f'round {r}'} {side} @ {md}: prefill {p:.1f} s, decode "
                    f"{median(st):.2f} s/step")
                if r:
                    prefill.setdefault((side, md), []).append(p)
                    steps.setdefault((side, md), []).extend(st)

    args = next(iter(grounders.values())).model_args
    print_config("falcon_cpu: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "model": "tiny test model (sanity only)" if a.quick else
                 f"{VARIANTS[a.variant][1]} published shape (dim {args.dim}, {args.n_layers} layers, "
                 f"{args.n_heads} heads x {args.head_dim}), random weights, fp32, {path}",
        "input": f"one 1280x960 image, one query ({QUERY!r}), detection task",
        "per query": f"prefill + {FALCON_DECODE_STEPS} decode steps x the median step ({a.decode_steps} steps timed "
                     "per call; random weights would decode to the next 128-token boundary)",
        "torch side": "FalconGrounder backend=torch device=cpu (falcon_cpu adapter: SDPA + sinks, last-position "
                      "head)",
        "mlx side": "FalconGrounder backend=mlx (package MLX model, mlx[cpu] wheel, BLAS: "
                    f"{os.environ.get('LD_PRELOAD') or 'the wheel own'})",
        "timing": f"{'no' if a.no_warmup else '1'} warm-up per side and size, then {a.rounds} rounds, sides "
                  "alternating; medians. The machine "
                  "is shared with other engineers running tests: absolute seconds vary with their load "
                  f"(load average at the end: {os.getloadavg()[0]:.1f})",
        **machine(),
    })
    rows = []
    for md in a.max_dimension:
        tokens = image_tokens(1280, 960, md)
        total = {side: median(prefill[(side, md)]) + FALCON_DECODE_STEPS * median(steps[(side, md)])
                 for side in a.sides}
        base = total.get("torch")
        for side in a.sides:
            ratio = f"{total[side] / base:.2f}x" if base else "-"
            rows.append([side, md, tokens, len(prefill[(side, md)]), fmt_s(median(prefill[(side, md)])),
                         fmt_s(median(steps[(side, md)])), fmt_s(total[side]), ratio])
    print("\n" + table(["side", "max_dimension", "image tokens", "calls", "prefill s", "s / decode step",
                        "s / query", "vs torch"], rows))
    print(f"\npeak RSS: {peak_rss_mib() / 1024:.2f} GiB; wall time: {now() - t_start:.0f} s")


if __name__ == "__main__":
    main()
