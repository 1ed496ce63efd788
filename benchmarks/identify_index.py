"""Identify index benchmark: query latency (faiss IndexFlatIP vs brute-force numpy) and the cost of
an incremental annotation update vs a full rebuild.

    .venv/bin/python benchmarks/identify_index.py            # 10k, 100k, 1M (about 2-3 minutes)
    .venv/bin/python benchmarks/identify_index.py --sizes 10000 100000 --queries 100

Random unit vectors, dim 512 (ViT-B-32's), one query at a time (a predict identifies a handful
of boxes).  The update section uses the real IndexStore (copy-on-write snapshot + atomic file
write with fsync) on a 10k index, and measures embedding cost with a random-weight ViT-B-32 (the
architecture production uses; weights do not change the speed)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.identify.index import IndexSnapshot, IndexStore, make_entry  # noqa: E402


def unit(rng, n, d):
    v = rng.standard_normal((n, d), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def pct(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000, p))


def bench_queries(sizes, dim, n_queries, k, rng):
    import faiss
    rows = []
    for n in sizes:
        t = time.perf_counter()
        vecs = unit(rng, n, dim)
        gen = time.perf_counter() - t
        t = time.perf_counter()
        index = faiss.IndexFlatIP(dim)
        index.add(vecs)
        build = time.perf_counter() - t
        qs = unit(rng, n_queries, dim)
        index.search(qs[:2], k)  # warm-up
        f_lat, n_lat = [], []
        for q in qs:
            t = time.perf_counter()
            D, I = index.search(q[None], k)
            f_lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = vecs @ q
            top = np.argpartition(-s, k)[:k]
            top = top[np.argsort(-s[top])]
            n_lat.append(time.perf_counter() - t)
            assert top[0] == I[0, 0]  # both exact: same nearest neighbour
        rows.append((n, build, gen, pct(f_lat, 50), pct(f_lat, 99), pct(n_lat, 50), pct(n_lat, 99)))
        print(f"  {n:>9,}: faiss p50 {rows[-1][3]:.2f} ms, numpy p50 {rows[-1][5]:.2f} ms", file=sys.stderr)
        del vecs, index
    return rows


def bench_updates(dim, n, rng, embed_model):
    out = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "idx.lfidx"
        store = IndexStore(path)
        vecs = unit(rng, n, dim)
        entries = [make_entry(f"label {i % 2000}", annotation=i // 2, region=f"r{i % 2}", task=i // 2)
                   for i in range(n)]
        t = time.perf_counter()
        store.replace_all(IndexSnapshot(vecs, entries, embedder="bench"))
        out["rebuild_index_s"] = time.perf_counter() - t
        out["file_mb"] = os.path.getsize(path) / 1e6
        times = []
        for i in range(20):
            new = unit(rng, 2, dim)
            ents = [make_entry("new", annotation=10 ** 6 + i, region=f"r{j}") for j in range(2)]
            t = time.perf_counter()
            store.set_annotation(10 ** 6 + i, new, ents, "bench")
            times.append(time.perf_counter() - t)
        out["add_one_index_ms"] = (pct(times, 50), pct(times, 99))
        t = time.perf_counter()
        IndexSnapshot.load(path)
        out["load_s"] = time.perf_counter() - t
    if embed_model:
        import open_clip
        import torch
        from PIL import Image
        torch.manual_seed(0)
        model, _, pre = open_clip.create_model_and_transforms(embed_model, pretrained=None)
        model.eval()
        crops = [Image.fromarray(rng.integers(0, 255, (180, 120, 3), dtype=np.uint8)) for _ in range(32)]
        with torch.no_grad():
            model.encode_image(torch.stack([pre(c) for c in crops[:2]]))
            t = time.perf_counter()
            model.encode_image(torch.stack([pre(c) for c in crops[:2]]))
            out["embed_one_annotation_s"] = time.perf_counter() - t  # 2 regions
            t = time.perf_counter()
            model.encode_image(torch.stack([pre(c) for c in crops]))
            out["embed_per_crop_s"] = (time.perf_counter() - t) / len(crops)
        out["threads"] = torch.get_num_threads()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=32, help="neighbours per query (identify searches >= 32)")
    ap.add_argument("--update-size", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (production default: 1)")
    ap.add_argument("--embed-model", default="ViT-B-32", help="open_clip arch for embedding cost ('' to skip)")
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"faiss omp threads {faiss.omp_get_max_threads()}", file=sys.stderr)
    rows = bench_queries(args.sizes, args.dim, args.queries, args.k, rng)
    upd = bench_updates(args.dim, args.update_size, rng, args.embed_model)

    print(f"\nQuery latency, one query, k={args.k}, dim {args.dim}, {args.queries} queries, faiss threads "
          f"{args.threads} (exact search both; same top-1 asserted)\n")
    print("| vectors | faiss IndexFlatIP p50 | p99 | numpy brute force p50 | p99 | faiss build |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, build, _, fp50, fp99, np50, np99 in rows:
        print(f"| {n:,} | {fp50:.2f} ms | {fp99:.2f} ms | {np50:.2f} ms | {np99:.2f} ms | {build:.2f} s |")
    n = args.update_size
    print(f"\nIndex updates at {n:,} vectors (IndexStore: copy-on-write snapshot + temp file, fsync, "
          f"os.replace; file {upd['file_mb']:.1f} MB)\n")
    print("| operation | time |")
    print("|---|---:|")
    a50, a99 = upd["add_one_index_ms"]
    print(f"| add/replace one annotation (2 regions), index + atomic write | p50 {a50:.1f} ms, p99 {a99:.1f} ms |")
    print(f"| full rebuild from {n:,} ready vectors, index + atomic write | {upd['rebuild_index_s'] * 1000:.1f} ms |")
    print(f"| load the {n:,}-vector index file (checksum verified) | {upd['load_s'] * 1000:.1f} ms |")
    if "embed_per_crop_s" in upd:
        e1, ec = upd["embed_one_annotation_s"], upd["embed_per_crop_s"]
        print(f"| embed one annotation (2 crops, {args.embed_model}, CPU {upd['threads']} threads) | "
              f"{e1 * 1000:.0f} ms |")
        print(f"| embed {n:,} crops for a full rebuild ({args.embed_model}, batch 32; "
              f"{ec * 1000:.1f} ms/crop, extrapolated) | {ec * n:.0f} s |")
        total_one = e1 + a50 / 1000
        total_full = ec * n + upd["rebuild_index_s"]
        print(f"| **incremental event total vs full rebuild** | **{total_one:.2f} s vs {total_full:.0f} s "
              f"({total_full / total_one:,.0f}x)** |")
    print(f"\n(total benchmark time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
