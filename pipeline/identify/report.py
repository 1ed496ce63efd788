"""``identify verify``: how well the index tells its own references apart.

Per reference vector (exact search, the reference itself left out):

* **margin** = 1 - cosine of the nearest reference with a *different* label: the margin a
  query that is an exact copy of this reference would get.  Its median drives the guidance
  table (> 0.3 ship, 0.1-0.3 consider fine-tuning, < 0.1 fine-tune).
* **leave-one-out top-1**: for labels with two or more references, is the nearest other
  reference of the same label?  (A label with one reference cannot be scored that way.)
* **most-confusable pairs**: label pairs ranked by the highest cosine between any of their
  references.

``compare_report`` puts the same figures side by side for an index and for that index seen
through a projection head (the head applied to its stored vectors), with the head's own
evaluation on fresh augmented views when the head file has one.
"""
from __future__ import annotations

import numpy as np

from pipeline.identify.index import IndexSnapshot

GUIDANCE = [
    (0.3, "ship", "margins > 0.3: the embedding separates the references; ship it"),
    (0.1, "consider fine-tune", "margins 0.1-0.3: works, but near-duplicates will get close; consider fine-tuning"),
    (-np.inf, "fine-tune", "margins < 0.1: references are confusable; fine-tune the embedder (or add references)"),
]


def guidance(median_margin: float) -> str:
    for lo, verdict, _ in GUIDANCE:
        if median_margin > lo:
            return verdict
    return GUIDANCE[-1][1]


def _neighbours(snap: IndexSnapshot, k: int = 64):
    """Per vector: (best same-label cosine, best other-label cosine, index of that other), self excluded."""
    n = len(snap)
    _, lab = np.unique(snap.labels.astype(str), return_inverse=True)
    same = np.full(n, -np.inf, np.float32)
    other = np.full(n, -np.inf, np.float32)
    other_j = np.full(n, -1, np.int64)
    k = min(n, k)
    D, I = snap.exact_search().knn(snap.vectors, k)  # exact whatever the size: never starts an IVF build
    for i in range(n):
        d, j = D[i], I[i]
        ok = (j >= 0) & (j != i)
        d, j = d[ok], j[ok]
        s = lab[j] == lab[i]
        if s.any():
            same[i] = d[s][0]
        if (~s).any():
            first = np.flatnonzero(~s)[0]
            other[i], other_j[i] = d[first], j[first]
    # rows whose k neighbours were all one label: exact answer by brute force
    missing = np.flatnonzero((other_j < 0) | ((same == -np.inf) & (np.bincount(lab)[lab] > 1)))
    for i in missing:
        cos = snap.vectors @ snap.vectors[i]
        cos[i] = -np.inf
        s = lab == lab[i]
        if s.sum() > 1:
            same[i] = cos[s].max()
        if (~s).any():
            o = np.where(~s, cos, -np.inf)
            other_j[i] = int(np.argmax(o))
            other[i] = o[other_j[i]]
    return lab, same, other, other_j


def verify_report(snap: IndexSnapshot, pairs: int = 10) -> dict:
    n = len(snap)
    labels = snap.labels.astype(str)
    rep = {"vectors": n, "labels": len(set(labels)), "version": snap.version, "embedder": snap.embedder}
    if n < 2 or len(set(labels)) < 2:
        rep.update(top1_loo=None, scored=0, median_margin=None, guidance=None, confusable=[],
                   note="need at least two labels to measure anything")
        return rep
    lab, same, other, other_j = _neighbours(snap)
    has_other = other_j >= 0
    margin = 1.0 - other[has_other]
    multi = np.bincount(lab)[lab] > 1
    correct = same[multi] > other[multi]
    loo_margin = (same - other)[multi]
    best: dict[tuple, tuple] = {}
    for i in np.flatnonzero(has_other):
        a, b = labels[i], labels[other_j[i]]
        key = (a, b) if a < b else (b, a)
        if key not in best or other[i] > best[key][0]:
            best[key] = (float(other[i]), int(i), int(other_j[i]))
    conf = sorted(best.items(), key=lambda kv: -kv[1][0])[:pairs]
    med = float(np.median(margin))
    rep.update(
        top1_loo=float(correct.mean()) if len(correct) else None,
        scored=int(multi.sum()), singletons=int((~multi).sum()),
        median_margin=med, p10_margin=float(np.percentile(margin, 10)), min_margin=float(margin.min()),
        median_loo_margin=float(np.median(loo_margin)) if len(loo_margin) else None,
        guidance=guidance(med),
        confusable=[{"a": a, "b": b, "cosine": round(c, 4),
                     "a_source": snap.entries[i]["source"], "b_source": snap.entries[j]["source"]}
                    for (a, b), (c, i, j) in conf],
        misidentified=[{"label": labels[i], "nearest_other": labels[other_j[i]],
                        "same_cosine": round(float(same[i]), 4), "other_cosine": round(float(other[i]), 4)}
                       for i in np.flatnonzero(multi & (same <= other))[:pairs]],
    )
    return rep


def format_report(rep: dict) -> str:
    lines = [f"index v{rep['version']} ({rep['embedder'] or 'unknown embedder'}): "
             f"{rep['vectors']} vectors, {rep['labels']} labels"]
    if rep.get("note"):
        return "\n".join(lines + [rep["note"]])
    if rep["top1_loo"] is None:
        lines.append("top-1 self-identification (leave-one-out): n/a (every label has a single reference)")
    else:
        lines.append(f"top-1 self-identification (leave-one-out): {rep['top1_loo']:.1%} "
                     f"over {rep['scored']} references of labels with 2+ references ({rep['singletons']} singletons)")
    lines.append(f"margin to the nearest other label: median {rep['median_margin']:.3f}, "
                 f"p10 {rep['p10_margin']:.3f}, min {rep['min_margin']:.3f}")
    lines.append("")
    lines.append("most-confusable pairs (highest cosine between references of two labels):")
    w = max([len(p["a"]) for p in rep["confusable"]] + [5])
    for p in rep["confusable"]:
        lines.append(f"  {p['a']:<{w}}  <->  {p['b']}   cos {p['cosine']:.3f}")
    lines.append("")
    lines.append("median margin | verdict")
    lines.append("------------- | -------")
    for (_lo, verdict, _), rng in zip(GUIDANCE, ["> 0.3", "0.1 - 0.3", "< 0.1"]):
        mark = "  <== this index" if verdict == rep["guidance"] else ""
        lines.append(f"{rng:<13} | {verdict}{mark}")
    lines.append("")
    lines.append(next(text for _, v, text in GUIDANCE if v == rep["guidance"]))
    return "\n".join(lines)


def compare_report(snap: IndexSnapshot, loaded, pairs: int = 10) -> dict:
    """``verify_report`` of ``snap`` (raw CLIP vectors) and of the same references through the head
    (``head.LoadedHead``), side by side."""
    from pipeline.identify.head import projected_id
    projected = IndexSnapshot(loaded.head.project(snap.vectors) if len(snap) else None, snap.entries, snap.version,
                              projected_id(snap.embedder, loaded.hash), dim=loaded.head.config["out_dim"])
    return {"before": verify_report(snap, pairs), "after": verify_report(projected, pairs),
            "projection": {"path": str(loaded.path) if loaded.path else None, "hash": loaded.hash,
                           "embedder": loaded.embedder, "config": loaded.head.config,
                           "train_eval": (loaded.train or {}).get("eval")}}


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_comparison(cmp: dict) -> str:
    b, a, p = cmp["before"], cmp["after"], cmp["projection"]
    head = f"with head {p['hash']}"
    rows = [("references / labels", f"{b['vectors']} / {b['labels']}", f"{a['vectors']} / {a['labels']}"),
            ("dim", str(p["config"]["in_dim"]), str(p["config"]["out_dim"]))]
    if b.get("note"):
        return "\n".join([f"index v{b['version']} ({b['embedder']}): {b['note']}"])
    rows += [("top-1 self-identification (leave-one-out)", _pct(b["top1_loo"]), _pct(a["top1_loo"])),
             ("median margin to the nearest other label", _num(b["median_margin"]), _num(a["median_margin"])),
             ("p10 margin", _num(b["p10_margin"]), _num(a["p10_margin"])),
             ("min margin", _num(b["min_margin"]), _num(a["min_margin"])),
             ("median leave-one-out margin", _num(b["median_loo_margin"]), _num(a["median_loo_margin"])),
             ("verdict", b["guidance"], a["guidance"])]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len("without head"), *(len(r[1]) for r in rows))
    lines = [f"index v{b['version']} ({b['embedder']}) and projection head {p['path'] or p['hash']}", "",
             f"{'':<{w0}}  {'without head':<{w1}}  {head}", f"{'-' * w0}  {'-' * w1}  {'-' * len(head)}"]
    lines += [f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}" for r in rows]
    ev = p.get("train_eval")
    if ev:
        lines += ["", f"the head's own evaluation ({ev['views']} fresh augmented views of its training references "
                      "against the un-augmented ones):",
                  f"  top-1 {_pct(ev['before']['top1'])} -> {_pct(ev['after']['top1'])}, median margin "
                  f"{_num(ev['before']['median_margin'])} -> {_num(ev['after']['median_margin'])}"]
    if a["confusable"]:
        lines += ["", "most-confusable pairs with the head:"]
        wa = max(len(x["a"]) for x in a["confusable"][:5])
        lines += [f"  {x['a']:<{wa}}  <->  {x['b']}   cos {x['cosine']:.3f}" for x in a["confusable"][:5]]
    lines += ["", "Margins here are between the index's own references; if the head was trained on them they are "
                  "optimistic. Projected cosines are not CLIP cosines: re-tune min_cosine/min_margin for an index "
                  "built with the head."]
    return "\n".join(lines)
