"""Identify index benchmark: exact vs approximate (IVF) search side by side, and what updates cost.

    .venv/bin/python benchmarks/identify_index.py            # 10k, 100k, 1M (about 10 minutes, ~10 GB RAM)
    .venv/bin/python benchmarks/identify_index.py --sizes 10000 100000 --queries 100

Everything goes through the real ``IndexSnapshot.search`` (candidates + best-other-label margin +
thresholds), one query at a time (a predict identifies a handful of boxes), exact and IVF interleaved
query by query so machine load hits both alike.  Dim 512 (ViT-B-32's), two kinds of vectors:

* **random**: i.i.d. unit vectors, the worst case for any approximate index (no structure: the
  nearest neighbour is barely nearer than the rest);
* **clustered**: what reference crops look like: "cards" (5 references each) whose centres share a
  common direction and a 64-dim subspace (random pairs have cosine ~0.56, like CLIP embeddings of
  one kind of object), references and queries are noisy views of a centre (query-to-nearest cosine
  ~0.9, median margin to the best other card ~0.18).

recall@1 = the IVF search's nearest reference is the exact search's (a tie in cosine counts);
same margin = its margin to the best other label equals the exact one (to 1e-5; a miss means the
IVF did not see the best other label, so the margin is too high); same answer = the same label, or
both "unknown", with ``min_margin`` 0.05 (the default) and no ``min_cosine``.  Update costs use the
real ``IndexStore`` (copy-on-write snapshot + atomic write) and the on-disk IVF cache.  Embedding
costs use a random-weight ViT-B-32 (the architecture production uses; weights do not change speed)."""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import log, table  # noqa: E402
from pipeline.identify import ann  # noqa: E402
from pipeline.identify.index import IndexSnapshot, IndexStore, make_entry  # noqa: E402

EXACT = ann.AnnSettings(min_size=2 ** 62)
MIN_MARGIN = 0.05  # the default providers.identify.min_margin: "same answer" = same label, or both unknown
PER_CARD = 5


def unit(v):
    v = np.asarray(v, np.float32)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v


def vectors(kind, rng, n, d, n_queries):
    """(references, their card numbers, queries)."""
    cards = max(1, n // PER_CARD)
    lab = np.arange(n) // PER_CARD
    x = np.empty((n, d), np.float32)
    if kind == "random":
        for s in range(0, n, 100_000):
            x[s:s + 100_000] = unit(rng.standard_normal((min(100_000, n - s), d), dtype=np.float32))
        return x, lab, unit(rng.standard_normal((n_queries, d), dtype=np.float32))
    mean = unit(rng.standard_normal(d, dtype=np.float32))
    basis = np.linalg.qr(rng.standard_normal((d, 64)).astype(np.float32))[0].T
    centre = unit(mean + 0.7 * unit(rng.standard_normal((cards, 64), dtype=np.float32) @ basis)
                  + 0.3 * unit(rng.standard_normal((cards, d), dtype=np.float32)))

    def views(idx):
        return unit(centre[idx] + 0.35 * unit(rng.standard_normal((len(idx), d), dtype=np.float32)))
    for s in range(0, n, 100_000):
        x[s:s + 100_000] = views(lab[s:s + 100_000])
    return x, lab, views(rng.integers(0, cards, n_queries))


def snapshot(x, lab, **kw):
    entries = [{"label": f"card {c}", "variant": None, "source": {"annotation": int(i)}} for i, c in enumerate(lab)]
    return IndexSnapshot(x, entries, embedder="bench", normalized=True, **kw)


def ms(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000, p))


def timed_search(snap, q, settings, **kw):
    """(wall seconds, CPU seconds of this thread, match): faiss runs on the calling thread (1 OpenMP
    thread), so CPU time is the query's own cost, without the time other processes held the core."""
    w, c = time.perf_counter(), time.thread_time()
    (m,) = snap.search(q[None], settings=settings, **kw)
    return time.perf_counter() - w, time.thread_time() - c, m


def compare(snap, queries, approx):
    """Per query, interleaved: exact and IVF ``search``; latencies, recall@1, margin and answer agreement."""
    wall_e, cpu_e, wall_a, cpu_a, hit, same_margin, same_answer = [], [], [], [], 0, 0, 0
    kw = {"min_cosine": 0.0, "min_margin": MIN_MARGIN}
    snap.search(queries[:2], settings=EXACT)
    snap.search(queries[:2], settings=approx)
    for q in queries:
        w, c, e = timed_search(snap, q, EXACT, **kw)
        wall_e.append(w)
        cpu_e.append(c)
        w, c, a = timed_search(snap, q, approx, **kw)
        wall_a.append(w)
        cpu_a.append(c)
        hit += a.neighbors[0].source == e.neighbors[0].source or abs(a.cosine - e.cosine) < 1e-6
        same_margin += abs(a.margin - e.margin) < 1e-5
        same_answer += a.label == e.label
    n = len(queries)
    return {"exact_p50": ms(wall_e, 50), "exact_cpu": ms(cpu_e, 50), "ivf_p50": ms(wall_a, 50),
            "ivf_p99": ms(wall_a, 99), "ivf_cpu": ms(cpu_a, 50), "recall": hit / n, "margin": same_margin / n,
            "answer": same_answer / n}


def sweep(snap, queries, nprobes, min_size):
    """recall@1 and p50 (wall, CPU) per nprobe, on the IVF base already built."""
    exact = snap.search(queries, settings=EXACT)
    rows = []
    for nprobe in nprobes:
        s = ann.AnnSettings(min_size=min_size, nprobe=nprobe, build="sync")
        wall, cpu, hit = [], [], 0
        for q, e in zip(queries, exact):
            w, c, a = timed_search(snap, q, s)
            wall.append(w)
            cpu.append(c)
            hit += a.neighbors[0].source == e.neighbors[0].source or abs(a.cosine - e.cosine) < 1e-6
        rows.append((nprobe, ms(wall, 50), ms(cpu, 50), hit / len(queries)))
    return rows


def bench_search(kinds, sizes, dim, n_queries, nprobe, nprobes, rng):
    results, sweeps = [], {}
    for kind in kinds:
        for n in sizes:
            x, lab, queries = vectors(kind, rng, n, dim, n_queries)
            snap = snapshot(x, lab)
            approx = ann.AnnSettings(min_size=0, nprobe=nprobe, build="sync")
            t = time.perf_counter()
            base = ann.AnnBase.build(snap)
            build = time.perf_counter() - t
            ann.registry.put(ann.registry.key(snap), base)
            r = compare(snap, queries, approx)
            r.update(kind=kind, n=n, build=build, nlist=base.index.nlist)
            if n == max(sizes) and nprobes:
                sweeps[kind] = sweep(snap, queries, nprobes, 0)
            results.append(r)
            log(f"{kind} {n:,}: exact p50 {r['exact_p50']:.2f} ms (CPU {r['exact_cpu']:.2f}), ivf p50 "
                f"{r['ivf_p50']:.2f} ms (CPU {r['ivf_cpu']:.2f}), recall@1 {r['recall']:.3f}, build {build:.1f} s")
            del x, snap, base
            ann.registry.clear()
            gc.collect()
    return results, sweeps


def bench_big_updates(n, dim, rng, nprobe, n_queries):
    """At n vectors: full write, IVF build + cache, and one annotation added / removed afterwards."""
    out = {}
    x, lab, queries = vectors("clustered", rng, n, dim, n_queries)
    settings = ann.AnnSettings(min_size=0, nprobe=nprobe, build="sync")
    with tempfile.TemporaryDirectory() as d:
        store = IndexStore(Path(d) / "idx.lfidx")
        t = time.perf_counter()
        first = snap = store.replace_all(snapshot(x, lab))
        out["write_s"] = time.perf_counter() - t
        out["file_mb"] = os.path.getsize(store.path) / 1e6
        del x
        t = time.perf_counter()
        snap.searcher(settings)  # builds the IVF base and writes the cache
        out["build_cache_s"] = time.perf_counter() - t
        out["cache_mb"] = os.path.getsize(ann.cache_path(store.path)) / 1e6
        t = time.perf_counter()
        ann.AnnBase.load(ann.cache_path(store.path), snap.lineage)  # what another worker / a restart pays
        out["load_cache_s"] = time.perf_counter() - t
        t = time.perf_counter()
        IndexSnapshot.load(store.path)
        out["load_index_s"] = time.perf_counter() - t
        adds, first_add, removes, first_rm = [], [], [], []
        for i in range(3):
            aid = 10 ** 9 + i
            t = time.perf_counter()
            snap = store.set_annotation(aid, unit(rng.standard_normal((2, dim), dtype=np.float32)),
                                        [make_entry("new", annotation=aid, region=f"r{j}") for j in range(2)], "bench")
            adds.append(time.perf_counter() - t)
            t = time.perf_counter()
            snap.search(queries[:1], settings=settings)
            first_add.append(time.perf_counter() - t)
        for _ in range(3):
            t = time.perf_counter()
            snap = store.remove_annotations([int(rng.integers(0, n))])
            removes.append(time.perf_counter() - t)
            t = time.perf_counter()
            snap.search(queries[:1], settings=settings)
            first_rm.append(time.perf_counter() - t)
        before, after = [], []
        for q in queries:  # the first snapshot and the updated one, interleaved
            before.append(timed_search(first, q, settings)[:2])
            after.append(timed_search(snap, q, settings)[:2])
        before, after = np.array(before), np.array(after)
        s = snap.searcher(settings)
        assert s.kind == "ivf" and s.removed == 3 and len(s.extra) == 6 and s.base is first.searcher(settings).base
        out.update(add_s=float(np.median(adds)), first_after_add_ms=ms(first_add, 50),
                   remove_s=float(np.median(removes)), first_after_remove_ms=ms(first_rm, 50),
                   before_p50_ms=ms(before[:, 0], 50), after_p50_ms=ms(after[:, 0], 50),
                   before_cpu_ms=ms(before[:, 1], 50), after_cpu_ms=ms(after[:, 1], 50))
    ann.registry.clear()
    return out


def bench_small_updates(dim, n, rng, embed_model):
    out = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "idx.lfidx"
        store = IndexStore(path)
        vecs = unit(rng.standard_normal((n, dim), dtype=np.float32))
        entries = [make_entry(f"label {i % 2000}", annotation=i // 2, region=f"r{i % 2}", task=i // 2)
                   for i in range(n)]
        t = time.perf_counter()
        store.replace_all(IndexSnapshot(vecs, entries, embedder="bench"))
        out["rebuild_index_s"] = time.perf_counter() - t
        out["file_mb"] = os.path.getsize(path) / 1e6
        times = []
        for i in range(20):
            new = unit(rng.standard_normal((2, dim), dtype=np.float32))
            ents = [make_entry("new", annotation=10 ** 6 + i, region=f"r{j}") for j in range(2)]
            t = time.perf_counter()
            store.set_annotation(10 ** 6 + i, new, ents, "bench")
            times.append(time.perf_counter() - t)
        out["add_one_index_ms"] = (ms(times, 50), ms(times, 99))
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
    ap.add_argument("--kinds", nargs="+", default=["clustered", "random"], choices=["clustered", "random"])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, default=ann.AnnSettings.nprobe, help="IVF lists probed per query")
    ap.add_argument("--sweep", type=int, nargs="*", default=[8, 16, 32, 64, 128],
                    help="nprobe values to sweep at the largest size ('--sweep' alone: none)")
    ap.add_argument("--update-size", type=int, default=10_000, help="index size for the incremental-vs-rebuild table")
    ap.add_argument("--big-update-size", type=int, default=None,
                    help="index size for the update-cost-at-scale table (default: the largest --sizes; 0 skips)")
    ap.add_argument("--embed-model", default="ViT-B-32", help="open_clip arch for embedding cost ('' to skip)")
    args = ap.parse_args()
    faiss = ann.faiss_module()  # LF_FAISS_THREADS (default 1), as in production
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    threads = faiss.omp_get_max_threads()
    log(f"faiss {faiss.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, faiss omp threads {threads}")
    results, sweeps = bench_search(args.kinds, args.sizes, args.dim, args.queries, args.nprobe, args.sweep, rng)
    big_n = max(args.sizes) if args.big_update_size is None else args.big_update_size
    big = bench_big_updates(big_n, args.dim, rng, args.nprobe, args.queries) if big_n else None
    small = bench_small_updates(args.dim, args.update_size, rng, args.embed_model)

    prod = ann.AnnSettings.from_env()
    print(f"\n### Search: exact vs IVF, one query at a time through IndexSnapshot.search (top-32 candidates, "
          f"margin), dim {args.dim}, {args.queries} queries, faiss threads {threads}, IVF nprobe {args.nprobe}; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(table(["vectors", "kind", "exact p50", "exact CPU p50", "IVF p50", "IVF p99", "IVF CPU p50",
                 "speed-up (CPU)", "recall@1", "same margin", "same answer", "IVF lists", "IVF build",
                 "production uses"],
                [[f"{r['n']:,}", r["kind"], f"{r['exact_p50']:.2f} ms", f"{r['exact_cpu']:.2f} ms",
                  f"{r['ivf_p50']:.2f} ms", f"{r['ivf_p99']:.2f} ms", f"{r['ivf_cpu']:.2f} ms",
                  f"{r['exact_cpu'] / r['ivf_cpu']:.1f}x", f"{r['recall']:.3f}", f"{r['margin']:.3f}",
                  f"{r['answer']:.3f}", r["nlist"], f"{r['build']:.1f} s",
                  "exact" if r["n"] < prod.min_size else "IVF"] for r in results]))
    for kind, rows in sweeps.items():
        print(f"\nnprobe sweep, {kind}, {max(args.sizes):,} vectors:\n")
        print(table(["nprobe", "IVF p50", "IVF CPU p50", "recall@1"],
                    [[p, f"{w:.2f} ms", f"{c:.2f} ms", f"{rec:.3f}"] for p, w, c, rec in rows]))
    if big:
        print(f"\n### Updates at {big_n:,} vectors (clustered; IndexStore atomic writes; IVF base + exact tail)\n")
        print(table(["operation", "time"], [
            [f"write the whole index ({big['file_mb']:,.0f} MB .lfidx)", f"{big['write_s']:.1f} s"],
            [f"build the IVF base + write its cache ({big['cache_mb']:,.0f} MB)", f"{big['build_cache_s']:.1f} s"],
            ["load the IVF cache (another worker, a restart)", f"{big['load_cache_s']:.1f} s"],
            ["load the .lfidx (checksums verified)", f"{big['load_index_s']:.1f} s"],
            ["add one annotation (2 vectors): new snapshot + atomic write", f"{big['add_s']:.1f} s"],
            ["first search after it (IVF base + 2-vector exact tail)", f"{big['first_after_add_ms']:.1f} ms"],
            ["remove one annotation: new snapshot + atomic write", f"{big['remove_s']:.1f} s"],
            ["first search after it (builds the live-id selector)", f"{big['first_after_remove_ms']:.1f} ms"],
            ["search p50: the first snapshot vs after 3 adds + 3 removes (same base, interleaved)",
             f"{big['before_p50_ms']:.2f} ms vs {big['after_p50_ms']:.2f} ms"],
            ["the same, CPU time", f"{big['before_cpu_ms']:.2f} ms vs {big['after_cpu_ms']:.2f} ms"]]))
    n = args.update_size
    print(f"\n### Incremental update vs full rebuild at {n:,} vectors (file {small['file_mb']:.1f} MB)\n")
    rows = [["add/replace one annotation (2 regions), index + atomic write",
             f"p50 {small['add_one_index_ms'][0]:.1f} ms, p99 {small['add_one_index_ms'][1]:.1f} ms"],
            [f"full rebuild from {n:,} ready vectors, index + atomic write",
             f"{small['rebuild_index_s'] * 1000:.1f} ms"],
            [f"load the {n:,}-vector index file (checksum verified)", f"{small['load_s'] * 1000:.1f} ms"]]
    if "embed_per_crop_s" in small:
        e1, ec = small["embed_one_annotation_s"], small["embed_per_crop_s"]
        total_one = e1 + small["add_one_index_ms"][0] / 1000
        total_full = ec * n + small["rebuild_index_s"]
        rows += [[f"embed one annotation (2 crops, {args.embed_model}, CPU {small['threads']} threads)",
                  f"{e1 * 1000:.0f} ms"],
                 [f"embed {n:,} crops for a full rebuild ({args.embed_model}, batch 32; {ec * 1000:.1f} ms/crop, "
                  "extrapolated)", f"{ec * n:.0f} s"],
                 ["**incremental event total vs full rebuild**",
                  f"**{total_one:.2f} s vs {total_full:.0f} s ({total_full / total_one:,.0f}x)**"]]
    print(table(["operation", "time"], rows))
    print(f"\n(total benchmark time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
