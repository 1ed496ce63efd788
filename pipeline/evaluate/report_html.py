"""report.html: one self-contained page a team lead can open, from report.json's data.

Plots are drawn with matplotlib's Agg backend and inlined as SVG with glyphs as paths (its bundled
DejaVu Sans; no font, script or stylesheet is fetched from anywhere): per-version bars, acceptance,
labeling time, PR curves per label, score histograms of kept vs deleted boxes and the reliability
curve of score as P(kept). Every text from Label Studio (titles, labels, versions) is escaped."""
from __future__ import annotations

import html
import io
from datetime import datetime, timezone
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.evaluate.matching import DELETED, KEPT, MOVED, PREDICTED_OUTCOMES, RELABELED  # noqa: E402
from pipeline.evaluate.report import ALL, SUMMARY, fmt, fmt_delta  # noqa: E402

MAX_LABEL_PLOTS = 12
MAX_SUSPECTS = 500
OUTCOME_COLORS = {KEPT: "#2e7d32", MOVED: "#9ccc65", RELABELED: "#ffb300", DELETED: "#c62828"}
PALETTE = plt.get_cmap("tab10").colors

CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;font-size:.9rem}table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}th{background:#f4f4f4}
.t{text-align:left}.fig{display:inline-block;margin:.4rem;vertical-align:top}
.note{color:#555;font-size:.88rem;max-width:60rem}.pos{color:#2e7d32}.neg{color:#c62828}
"""


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return f'<div class="fig">{text[text.index("<svg"):]}</div>'


def _style() -> None:
    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "label-factory", "font.family": "DejaVu Sans",
                         "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _short(v: str, n: int = 28) -> str:
    return v if len(v) <= n else v[: n - 1] + "…"


# -- plots ------------------------------------------------------------------------------------------
def _version_bars(versions: dict) -> str:
    figs = [("box precision", ("detection", "precision")), ("box recall", ("detection", "recall")),
            ("box F1", ("detection", "f1")), ("AP50", ("detection", "ap50")), ("AP50:95", ("detection", "ap50_95")),
            ("image precision", ("images", "precision")), ("image recall", ("images", "recall"))]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(1, len(versions))
    x = np.arange(len(figs))
    for i, (v, f) in enumerate(versions.items()):
        vals = [f[a][ALL][b] for _, (a, b) in figs]
        bars = ax.bar(x + i * width, [0 if val is None else val for val in vals], width, label=_short(v),
                      color=PALETTE[i % len(PALETTE)])
        ax.bar_label(bars, labels=[fmt(val, "pct") for val in vals], fontsize=7, padding=1)
    ax.set_xticks(x + width * (len(versions) - 1) / 2, [t for t, _ in figs], rotation=20, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_title("Quality per model_version (all labels)")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _acceptance_bars(versions: dict) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(versions)))
    names = list(versions)
    left = np.zeros(len(names))
    for o in PREDICTED_OUTCOMES:
        shares = np.array([versions[v]["acceptance"][ALL][f"{o}_share"] or 0.0 for v in names])
        ax.barh([_short(v) for v in names], shares, left=left, color=OUTCOME_COLORS[o], label=o)
        left += shares
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title("What annotators did with the predicted boxes")
    ax.legend(ncol=4, fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _svg(fig)


def _time_bars(report: dict) -> Optional[str]:
    times = [("no prediction", report["time_without_prediction"])]
    times += [(_short(v), f["time"]) for v, f in report["versions"].items()]
    if all(t["median_seconds"] is None for _, t in times):
        return None
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.45 * len(times)))
    bars = ax.barh([name for name, _ in times], [t["median_seconds"] or 0 for _, t in times],
                   color=["#777"] + list(PALETTE[: len(times) - 1]))
    ax.bar_label(bars, labels=[f"{fmt(t['median_seconds'], 'sec')} ({t['tasks']:,} tasks)" for _, t in times],
                 fontsize=7, padding=2)
    ax.margins(x=0.3)
    ax.invert_yaxis()
    ax.set_xlabel("median seconds per task (lead_time)")
    ax.set_title("Labeling time")
    return _svg(fig)


def _pr_curves(versions: dict) -> list[str]:
    labels: dict[str, int] = {}
    for f in versions.values():
        for lab, d in f["detection"].items():
            if lab != ALL and f["pr_curves"]["labels"].get(lab):
                labels[lab] = max(labels.get(lab, 0), d["tp"] + d["fn"])
    out = []
    for lab in sorted(labels, key=lambda k: -labels[k])[:MAX_LABEL_PLOTS]:
        fig, ax = plt.subplots(figsize=(3.6, 3.0))
        for i, (v, f) in enumerate(versions.items()):
            curve = f["pr_curves"]["labels"].get(lab)
            if curve:
                ap = f["detection"].get(lab, {}).get("ap50")
                ax.plot(f["pr_curves"]["recall"], curve, color=PALETTE[i % len(PALETTE)],
                        label=f"{_short(v, 18)} AP50 {fmt(ap, 'pct')}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"PR at IoU 0.5: {_short(lab, 24)}")
        ax.legend(fontsize=7, frameon=False, loc="lower left")
        out.append(_svg(fig))
    return out


def _score_histograms(v: str, f: dict) -> Optional[str]:
    s = f["scores"]
    kept, deleted = s["histograms"][KEPT], s["histograms"][DELETED]
    if not sum(kept) + sum(deleted):
        return None
    edges = np.linspace(0, 1, s["histogram_bins"] + 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.stairs(kept, edges, fill=True, alpha=0.55, color=OUTCOME_COLORS[KEPT], label=f"kept ({sum(kept)})")
    ax.stairs(deleted, edges, fill=True, alpha=0.55, color=OUTCOME_COLORS[DELETED], label=f"deleted ({sum(deleted)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("box score")
    ax.set_ylabel("boxes")
    ax.set_title(f"Scores kept vs deleted: {_short(v, 22)}")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def _reliability(versions: dict) -> Optional[str]:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfectly calibrated")
    drawn = False
    for i, (v, f) in enumerate(versions.items()):
        rel = f["scores"]["reliability"]
        pts = [(b["mean_score"], b["kept_share"], b["boxes"]) for b in rel["bins"] if b["boxes"]]
        if not pts:
            continue
        drawn = True
        xs, ys, ns = zip(*pts)
        ax.plot(xs, ys, marker="o", color=PALETTE[i % len(PALETTE)], label=f"{_short(v, 18)} ECE {fmt(rel['ece'])}")
        ax.scatter(xs, ys, s=[10 + 60 * n / max(ns) for n in ns], color=PALETTE[i % len(PALETTE)], alpha=0.35)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("box score (bin mean)")
    ax.set_ylabel("share of boxes kept")
    ax.set_title("Reliability: score as P(annotator keeps the box)")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return _svg(fig)


# -- tables ---------------------------------------------------------------------------------------
def _table(head: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """Cells are HTML already; the first ``text_columns`` columns are left-aligned, numbers right."""
    def cell(tag, i, c):
        return f"<{tag} class='t'>{c}</{tag}>" if i < text_columns else f"<{tag}>{c}</{tag}>"
    th = "".join(cell("th", i, _esc(h)) for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _summary(versions: dict) -> str:
    return _table(["figure"] + list(versions), [[_esc(fig.title)] + [_esc(fmt(fig.get(f), fig.kind))
                                                                      for f in versions.values()] for fig in SUMMARY])


def _labels(f: dict) -> str:
    rows = []
    for lab, d in f["detection"].items():
        a = f["acceptance"].get(lab, {})
        i = f["images"].get(lab, {})
        rows.append([_esc(lab)] + [_esc(fmt(d[k], "int")) for k in ("tp", "fp", "fn")]
                    + [_esc(fmt(d[k], "pct")) for k in ("precision", "recall", "f1", "ap50", "ap50_95")]
                    + [_esc(fmt(i.get(k), "pct")) for k in ("precision", "recall")]
                    + [_esc(fmt(a.get(f"{o}_share"), "pct")) for o in PREDICTED_OUTCOMES]
                    + [_esc(fmt(a.get("added", 0), "int"))])
    return _table(["label", "TP", "FP", "FN", "precision", "recall", "F1", "AP50", "AP50:95", "image P", "image R",
                   "kept", "moved", "relabeled", "deleted", "added"], rows)


def _compare(c: dict) -> str:
    rows = []
    for r in c["rows"]:
        d = fmt_delta(r["a"], r["b"], r["format"])
        cls = {"b": ' class="pos"', "a": ' class="neg"'}.get(r["better"], "")
        rows.append([_esc(r["metric"]), _esc(fmt(r["a"], r["format"])), _esc(fmt(r["b"], r["format"])),
                     f"<span{cls}>{_esc(d)}</span>"])
    return (f"<h2>Compare: {_esc(c['a'])} vs {_esc(c['b'])}</h2><p class='note'>On the {c['tasks']:,} reviewed "
            "tasks both versions predicted. Green: B is better on that figure, red: A is (fewer deleted boxes, "
            "a lower ECE or less time count as better; counts are not coloured).</p>"
            + _table(["figure", c["a"], c["b"], "B - A"], rows))


def _suspects(suspects: list[dict]) -> str:
    if not suspects:
        return ("<h2>Suspects (0)</h2><p class='note'>No confident prediction was deleted or relabeled and no "
                "annotated box was matched only by a very low score.</p>")
    rows = [[f'<a href="{_esc(s["link"])}">{_esc(s["task"])}</a>', _esc(s["model_version"]), _esc(s["kind"]),
             _esc(s["label"]), _esc(fmt(s["score"])), _esc(fmt(s["iou"]))] for s in suspects[:MAX_SUSPECTS]]
    more = (f"<p class='note'>{len(suspects) - MAX_SUSPECTS:,} more in report.json.</p>"
            if len(suspects) > MAX_SUSPECTS else "")
    return (f"<h2>Suspects ({len(suspects):,})</h2><p class='note'>Annotated boxes the models strongly disagree "
            "with, strongest first: a confident prediction the annotator deleted or relabeled, or an annotated "
            "box a prediction of its label matched with a very low score. Click a task to open it.</p>"
            + _table(["task", "model_version", "what", "label", "score", "IoU"], rows, text_columns=4) + more)


def render(report: dict) -> str:
    """The whole page as one string."""
    _style()
    p, t, s = report.get("project", {}), report["tasks"], report["settings"]
    versions = report["versions"]
    when = report.get("generated_at") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    link = f'<a href="{_esc(p["url"])}">{_esc(p["url"])}</a>' if p.get("url") else ""
    parts = [f"<h1>Pre-annotation report: {_esc(p.get('title', ''))}</h1>",
             f"<p class='meta'>Label Studio project {_esc(p.get('id', ''))} {link} · generated {_esc(when)} · "
             f"{t['reviewed']:,} reviewed tasks ({t['listed']:,} with an annotation listed) · box match at IoU ≥ "
             f"{s['match_iou']}, kept at IoU ≥ {s['keep_iou']}</p>",
             "<p class='note'>Ground truth is each task's latest submitted, non-cancelled annotation. A predicted "
             "box is <b>kept</b> when an annotated box of its label overlaps it at the kept IoU, <b>moved</b> at "
             "the match IoU, <b>relabeled</b> when the overlapping annotated box has another label, and "
             "<b>deleted</b> otherwise; annotated boxes no prediction matched were <b>added</b>. Image precision "
             "and recall treat each task as one yes/no (any box at all), as the filter stage does. Labeling time "
             "counts a task as annotated with a prediction when the prediction existed when the annotation was "
             "submitted.</p>"]
    if not versions:
        parts.append("<p>No reviewed task has a prediction: nothing to evaluate.</p>")
    else:
        w = report["time_without_prediction"]
        parts += ["<h2>Summary</h2>", _summary(versions),
                  f"<p class='note'>Median seconds per task annotated without any prediction: "
                  f"{_esc(fmt(w['median_seconds'], 'sec'))} ({w['tasks']:,} tasks).</p>",
                  _version_bars(versions), _acceptance_bars(versions)]
        time_plot = _time_bars(report)
        if time_plot:
            parts.append(time_plot)
        if "compare" in report:
            parts.append(_compare(report["compare"]))
        parts.append("<h2>Precision-recall per label</h2>")
        parts += _pr_curves(versions) or ["<p class='note'>No label has both annotated and predicted boxes.</p>"]
        parts.append("<h2>Scores and calibration</h2>")
        parts += [h for h in [_reliability(versions)] + [_score_histograms(v, f) for v, f in versions.items()] if h]
        for v, f in versions.items():
            parts += [f"<h2>{_esc(v)}: per label</h2>", _labels(f)]
    if "suspects" in report:
        parts.append(_suspects(report["suspects"]))
    title = _esc(f"label-factory evaluate: {p.get('title', '')}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
