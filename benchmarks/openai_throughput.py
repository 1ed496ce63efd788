"""Throughput of the ``openai`` provider (OpenAIVLM) against a REAL mlx_vlm.server, at concurrency 1, 2, 4,
and the first-token-logprobs YES/NO request (max_tokens=1) vs a generated text answer (8 tokens) through
the same server, all in one run.

The script builds the tiny random-weight Qwen2.5-VL test model (config flattened for mlx-vlm 0.7.x, and
yes/no planted as the top first tokens with pipeline.tiny.qwen.plant_yes_no so every YES/NO request is
answered from logprobs instead of falling back to text; dense compute does not depend on weight values), starts
``python -m mlx_vlm.server --model DIR --host 127.0.0.1 --port FREE --top-logprobs-k 5``, warms it up,
measures, and stops it.

    .venv/bin/python benchmarks/openai_throughput.py           # tiny Qwen2.5-VL, 24 requests per level
    .venv/bin/python benchmarks/openai_throughput.py --quick   # 4 requests per level

Every request carries a distinct image (so mlx-vlm's vision cache never short-cuts the vision tower).
Throughput uses the provider's own fan-out (``OpenAIVLM(concurrency=c).yes_probabilities(images)``:
a thread pool of c workers over one requests.Session); latency is timed per request inside it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _qwen  # noqa: E402
from benchmarks._common import (  # noqa: E402
    fmt_s,
    log,
    machine,
    median,
    now,
    peak_rss_mib,
    percentile,
    print_config,
    proc_peak_rss_mib,
    table,
    timed,
)
from pipeline.stack.mlx_server import start_mlx_vlm_server  # noqa: E402

QUESTION = "Is this a stop sign? Answer YES or NO."


class Images:
    """An endless supply of distinct noise images of one size."""

    def __init__(self, size: int, seed: int = 2):
        import numpy as np
        self.rng, self.size = np.random.default_rng(seed), size

    def take(self, n: int):
        from PIL import Image
        return [Image.fromarray(self.rng.integers(0, 256, (self.size, self.size, 3), dtype="uint8"))
                for _ in range(n)]


def yesno_mlx_dir(max_pixels: int) -> Path:
    """Tiny mlx-vlm model dir whose first answer token is always yes/no (same compute as random weights)."""
    import shutil

    from pipeline.tiny.qwen import plant_yes_no
    src = _qwen.mlx_dir("tiny", max_pixels)
    out = src.with_name(src.name + "-yesno")
    if not (out / "bench_build.json").exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        plant_yes_no(tmp)
        tmp.rename(out)
    return out


def timed_requests(vlm) -> list[float]:
    """Benchmark-only instrumentation: time each yes_probability call made by this provider object."""
    lat: list[float] = []
    orig = vlm.yes_probability

    def one(image, question):
        dt, out = timed(orig, image, question)
        lat.append(dt)
        return out
    vlm.yes_probability = one  # yes_probabilities' pool calls self.yes_probability -> this wrapper
    return lat


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 requests per level, 3 per side of the ratio")
    ap.add_argument("--requests", type=int, default=24, help="requests per concurrency level (default 24)")
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--ratio-calls", type=int, default=10, help="calls per side for logprobs vs text (default 10)")
    ap.add_argument("--size", type=int, default=224, help="image side in px (default 224)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    a = ap.parse_args(argv)
    if a.quick:
        a.requests, a.ratio_calls = 4, 3
    levels = [int(c) for c in a.concurrency.split(",")]
    from pipeline.providers.openai_vlm import OpenAIVLM

    t_start = now()
    mdir = yesno_mlx_dir(a.size * a.size)
    info = _qwen.build_info(mdir)
    tmp = Path(tempfile.mkdtemp(prefix="lf-bench-mlx-"))
    log(f"starting mlx_vlm.server for {mdir.name} ...")
    t0 = now()
    server = start_mlx_vlm_server(mdir, tmp / "server.log", top_logprobs_k=5, timeout=300)
    proc, url, cmd = server.proc, server.url, server.cmd
    startup_s = now() - t0
    imgs = Images(a.size)
    rows, ratio_rows = [], []
    try:
        log(f"server up at {url} in {startup_s:.1f} s; warming up")
        warm = OpenAIVLM(url, str(mdir), timeout=600, retries=0, concurrency=max(levels))
        warm.generate_answer(imgs.take(1)[0], QUESTION, 1)
        warm.yes_probabilities(imgs.take(max(levels)), QUESTION)
        warm.close()

        # -- throughput at concurrency 1, 2, 4 through the provider's own fan-out --------------------
        base = None
        for c in levels:
            vlm = OpenAIVLM(url, str(mdir), timeout=600, retries=0, concurrency=c)
            lat = timed_requests(vlm)
            batch = imgs.take(a.requests)
            wall, res = timed(vlm.yes_probabilities, batch, QUESTION)
            vlm.close()
            methods = sorted({r.method for r in res})
            rps = a.requests / wall
            base = base or rps
            rows.append([c, a.requests, fmt_s(wall), f"{rps:.2f}", f"{rps / base:.2f}x", fmt_s(median(lat)),
                         fmt_s(percentile(lat, 90)), "/".join(methods)])
            log(f"  concurrency {c}: {rps:.2f} req/s, p50 {median(lat):.3f} s, methods {methods}")

        # -- logprobs (max_tokens=1) vs text generate (N tokens), concurrency 1, interleaved --------
        vlm = OpenAIVLM(url, str(mdir), timeout=600, retries=0, concurrency=1)
        t_lp, t_gen, gen_tokens = [], [], set()
        for i in range(a.ratio_calls):
            im_lp, im_gen = imgs.take(2)
            for what in (("lp", "gen") if i % 2 == 0 else ("gen", "lp")):
                if what == "lp":
                    dt, r = timed(vlm.yes_probability, im_lp, QUESTION)
                    assert r.method == "logprobs", r
                    t_lp.append(dt)
                else:
                    dt, _ = timed(vlm.generate_answer, im_gen, QUESTION, max_new_tokens=a.max_new_tokens)
                    t_gen.append(dt)
        # one extra raw text request, only to read the server's token usage for the generate side
        usage = vlm._post(vlm._body(imgs.take(1)[0], QUESTION, a.max_new_tokens, logprobs=False)).get("usage") or {}
        gen_tokens.add(usage.get("completion_tokens", usage.get("output_tokens")))
        vlm.close()
        m_lp, m_gen = median(t_lp), median(t_gen)
        ratio_rows = [["YES/NO from first-token top_logprobs (max_tokens=1)", len(t_lp), fmt_s(m_lp), "1.00x"],
                      [f"text answer (max_tokens={a.max_new_tokens})", len(t_gen), fmt_s(m_gen),
                       f"{m_gen / m_lp:.2f}x slower"]]
        server_rss = proc_peak_rss_mib(proc.pid)
    finally:
        server.stop()

    print_config("openai_throughput: configuration", {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "server": " ".join(Path(cmd[0]).name if i == 0 else x for i, x in enumerate(cmd)).replace(str(mdir), "DIR")
                  + f" (mlx-vlm {_mlx_vlm_version()}, mlx CPU backend; startup {startup_s:.1f} s)",
        "model": f"{_qwen.ARCH_NAMES['tiny']}; {info['params'] / 1e6:.2f} M params; config flattened for "
                 f"mlx-vlm (pipeline.tiny.qwen.mlx_copy); yes/no planted as top first tokens "
                 f"(pipeline.tiny.qwen.plant_yes_no) so the logprobs path never falls back to text",
        "requests": f"OpenAIVLM.yes_probabilities over {a.requests} distinct {a.size}x{a.size} noise images per "
                    f"level (JPEG data URIs, max_tokens=1, logprobs=true, top_logprobs=5); timeout 600 s, no retries",
        "throughput": "requests / wall time of the whole call; latency = per-request time inside it",
        "ratio": f"{a.ratio_calls} interleaved calls per side at concurrency 1; generate side: "
                 f"OpenAIVLM.generate_answer(max_new_tokens={a.max_new_tokens}); server-reported completion "
                 f"tokens of a text answer: {sorted(x for x in gen_tokens if x is not None) or 'n/a'}",
        **machine(),
    })
    print("\n" + table(["concurrency", "requests", "wall s", "req/s", "vs c=1", "p50 latency s", "p90 latency s",
                        "method"], rows))
    print("\n" + table(["request", "calls", "median s", "ratio vs logprobs"], ratio_rows))
    print(f"\nserver peak RSS: {server_rss / 1024:.2f} GiB; client peak RSS: {peak_rss_mib() / 1024:.2f} GiB; "
          f"wall time: {now() - t_start:.0f} s")


def _mlx_vlm_version() -> str:
    try:
        from importlib.metadata import version
        return version("mlx-vlm")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    main()
