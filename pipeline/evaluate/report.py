"""Assemble the evaluation of a project's tasks (report.json) and print it as terminal tables (rich).

``evaluate_tasks`` matches every model_version's predictions on the reviewed tasks and computes its
figures (metrics.py); ``--compare A B`` adds both versions measured on the tasks they both predicted,
with the differences. ``SUMMARY`` names the headline figures once for the terminal, the HTML page and
the comparison."""
from __future__ import annotations

from collections import Counter
from typing import Callable, NamedTuple, Optional

from rich.console import Console
from rich.table import Table

from pipeline.evaluate import metrics
from pipeline.evaluate.matching import PREDICTED_OUTCOMES, BoxRecord, check_thresholds, match_version
from pipeline.evaluate.tasks import EvalTask

ALL = metrics.ALL


def _get(*path) -> Callable[[dict], object]:
    def get(m: dict):
        for key in path:
            if not isinstance(m, dict):
                return None
            m = m.get(key)
        return m
    return get


class Figure(NamedTuple):
    title: str
    get: Callable[[dict], object]  # from one version's figures
    kind: str  # format: int, pct, sec, num
    better: int  # +1 higher is better, -1 lower is better, 0 neither (a count)


SUMMARY: list[Figure] = [
    Figure("reviewed tasks", _get("tasks"), "int", 0),
    Figure("boxes predicted", _get("boxes", "predicted"), "int", 0),
    Figure("boxes annotated", _get("boxes", "annotated"), "int", 0),
    Figure("box precision", _get("detection", ALL, "precision"), "pct", 1),
    Figure("box recall", _get("detection", ALL, "recall"), "pct", 1),
    Figure("box F1", _get("detection", ALL, "f1"), "pct", 1),
    Figure("AP50", _get("detection", ALL, "ap50"), "pct", 1),
    Figure("AP50:95", _get("detection", ALL, "ap50_95"), "pct", 1),
    Figure("AP50:95, boxes as stored (pycocotools)", _get("detection", ALL, "ap50_95_as_stored"), "pct", 1),
    Figure("image precision (filter)", _get("images", ALL, "precision"), "pct", 1),
    Figure("image recall (filter)", _get("images", ALL, "recall"), "pct", 1),
    Figure("kept", _get("acceptance", ALL, "kept_share"), "pct", 1),
    Figure("moved", _get("acceptance", ALL, "moved_share"), "pct", -1),
    Figure("relabeled", _get("acceptance", ALL, "relabeled_share"), "pct", -1),
    Figure("deleted", _get("acceptance", ALL, "deleted_share"), "pct", -1),
    Figure("boxes added by annotators", _get("acceptance", ALL, "added"), "int", -1),
    Figure("ECE of score as P(kept) (lower is better)", _get("scores", "reliability", "ece"), "num", -1),
    Figure("median s/task with this prediction", _get("time", "median_seconds"), "sec", -1),
    Figure("tasks timed with this prediction", _get("time", "tasks"), "int", 0),
]


_FORMATS = {"int": (1, ",.0f", ""), "pct": (100, ".1f", "%"), "sec": (1, ".1f", " s"), "num": (1, ".3f", "")}


def fmt(value, kind: str = "num", signed: bool = False) -> str:
    """A figure for people: ``int`` 1,234 · ``pct`` 12.3% (signed: +1.2 pt) · ``sec`` 4.5 s · ``num`` 0.123."""
    if value is None:
        return "–"
    scale, spec, unit = _FORMATS[kind]
    unit = " pt" if signed and kind == "pct" else unit
    return f"{value * scale:{'+' if signed else ''}{spec}}{unit}"


def fmt_delta(a, b, kind: str) -> str:
    return "–" if a is None or b is None else fmt(b - a, kind, signed=True)


def versions_of(tasks: list[EvalTask]) -> list[str]:
    """model_versions on reviewed tasks, most tasks first."""
    n = Counter(v for t in tasks if t.truth is not None for v in t.predictions)
    return sorted(n, key=lambda v: (-n[v], v))


def _version_figures(tasks: list[EvalTask], version: str, match_iou: float, keep_iou: float, bins: int,
                     timing: dict) -> tuple[dict, list[BoxRecord]]:
    vt = [t for t in tasks if t.truth is not None and version in t.predictions]
    records = list(match_version(vt, version, match_iou=match_iou, keep_iou=keep_iou))
    figures = metrics.version_metrics(vt, version, records, bins)
    figures["time"] = timing[version]
    return figures, records


def evaluate_tasks(tasks: list[EvalTask], *, match_iou: float = 0.5, keep_iou: float = 0.9,
                   versions: Optional[list[str]] = None, compare: Optional[tuple[str, str]] = None,
                   bins: int = 10) -> tuple[dict, dict[str, list[BoxRecord]]]:
    """(report dict, matching records per version). ``versions``: only these (default: every one found)."""
    check_thresholds(match_iou, keep_iou)
    reviewed = [t for t in tasks if t.truth is not None]
    found = versions_of(reviewed)
    wanted = list(dict.fromkeys((versions or found) + list(compare or ())))
    missing = [v for v in wanted if v not in found]
    if missing:
        raise ValueError(f"no reviewed task has a prediction with model_version {', '.join(map(repr, missing))} "
                         f"(found: {', '.join(map(repr, found)) or 'none'})")
    timing = metrics.lead_times(reviewed, wanted)
    report = {
        "settings": {"match_iou": match_iou, "keep_iou": keep_iou, "reliability_bins": bins},
        "tasks": {"listed": len(tasks), "reviewed": len(reviewed),
                  "reviewed_without_prediction": sum(1 for t in reviewed if not t.predictions),
                  "skipped_regions": sum(t.skipped_regions for t in tasks)},
        "time_without_prediction": timing["without_prediction"],
        "versions": {},
    }
    records: dict[str, list[BoxRecord]] = {}
    for v in wanted:
        report["versions"][v], records[v] = _version_figures(reviewed, v, match_iou, keep_iou, bins, timing)
        without = timing["without_prediction"]["median_seconds"]
        with_ = timing[v]["median_seconds"]
        report["versions"][v]["time"]["seconds_saved_per_task"] = (
            None if without is None or with_ is None else without - with_)
    if compare:
        report["compare"] = compare_versions(reviewed, *compare, match_iou=match_iou, keep_iou=keep_iou, bins=bins)
    return report, records


def compare_versions(tasks: list[EvalTask], a: str, b: str, *, match_iou: float, keep_iou: float,
                     bins: int = 10) -> dict:
    """A and B on the reviewed tasks both predicted, figure by figure with B - A."""
    common = [t for t in tasks if t.truth is not None and a in t.predictions and b in t.predictions]
    timing = metrics.lead_times(common, [a, b])
    fa, _ = _version_figures(common, a, match_iou, keep_iou, bins, timing)
    fb, _ = _version_figures(common, b, match_iou, keep_iou, bins, timing)
    rows = []
    for f in SUMMARY:
        a_, b_ = f.get(fa), f.get(fb)
        delta = None if a_ is None or b_ is None else b_ - a_
        better = None if not delta or not f.better else ("b" if delta * f.better > 0 else "a")
        rows.append({"metric": f.title, "a": a_, "b": b_, "delta": delta, "better": better, "format": f.kind})
    return {"a": a, "b": b, "tasks": len(common), "rows": rows, "figures": {a: fa, b: fb}}


# -- terminal -----------------------------------------------------------------------------------
def _summary_table(report: dict) -> Table:
    versions = report["versions"]
    table = Table(title="Predictions vs reviewed annotations, per model_version", title_justify="left")
    table.add_column("figure")
    for v in versions:
        table.add_column(v, justify="right", overflow="fold")
    for fig in SUMMARY:
        table.add_row(fig.title, *(fmt(fig.get(f), fig.kind) for f in versions.values()))
    return table


def _label_tables(version: str, f: dict) -> list[Table]:
    boxes = Table(title=f"{version}: boxes per label (IoU >= match IoU)", title_justify="left")
    for col in ("label", "TP", "FP", "FN", "precision", "recall", "F1", "AP50", "AP50:95"):
        boxes.add_column(col, justify="left" if col == "label" else "right")
    for label, d in f["detection"].items():
        boxes.add_row(label, *(fmt(d[k], "int") for k in ("tp", "fp", "fn")),
                      *(fmt(d[k], "pct") for k in ("precision", "recall", "f1", "ap50", "ap50_95")))
    kept = Table(title=f"{version}: what annotators did with the predicted boxes", title_justify="left")
    for col in ("label", "predicted", *PREDICTED_OUTCOMES, "added"):
        kept.add_column(col, justify="left" if col == "label" else "right")
    for label, a in f["acceptance"].items():
        kept.add_row(label, fmt(a["predicted"], "int"), *(fmt(a[f"{o}_share"], "pct") for o in PREDICTED_OUTCOMES),
                     fmt(a["added"], "int"))
    return [boxes, kept]


def _compare_table(c: dict) -> Table:
    table = Table(title=f"--compare on the {c['tasks']:,} reviewed tasks both versions predicted (green: B better)",
                  title_justify="left")
    for col, justify in (("figure", "left"), (c["a"], "right"), (c["b"], "right"), ("B - A", "right")):
        table.add_column(col, justify=justify, overflow="fold")
    for row in c["rows"]:
        style = {"b": "green", "a": "red"}.get(row["better"], "")
        table.add_row(row["metric"], fmt(row["a"], row["format"]), fmt(row["b"], row["format"]),
                      f"[{style}]{fmt_delta(row['a'], row['b'], row['format'])}[/]" if style else
                      fmt_delta(row["a"], row["b"], row["format"]))
    return table


def _suspects_table(suspects: list[dict], limit: int) -> Table:
    table = Table(title=f"Suspects: annotated boxes the models strongly disagree with ({len(suspects):,}; "
                        f"strongest {min(limit, len(suspects))} shown)", title_justify="left")
    for col in ("task", "model_version", "what", "label", "score", "link"):
        table.add_column(col, overflow="fold")
    for s in suspects[:limit]:
        table.add_row(str(s["task"]), s["model_version"], s["kind"], s["label"], fmt(s["score"]), s["link"])
    return table


def table_console(width: int = 160) -> Console:
    """A rich console for wide tables: the terminal's width, or at least ``width`` when printing to a pipe or
    a file (no terminal width to respect: keep the tables whole)."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, width))


def print_report(report: dict, console: Optional[Console] = None, suspects_shown: int = 30) -> None:
    console = console or table_console()
    t, p = report["tasks"], report.get("project", {})
    console.print(f"[bold]{p.get('title', '')}[/bold] (project {p.get('id', '?')}): {t['listed']:,} tasks with an "
                  f"annotation listed, {t['reviewed']:,} reviewed (latest submitted annotation), "
                  f"{t['reviewed_without_prediction']:,} of them without any prediction; "
                  f"match IoU {report['settings']['match_iou']}, kept IoU {report['settings']['keep_iou']}")
    if t["skipped_regions"]:
        console.print(f"{t['skipped_regions']:,} malformed or sub-pixel regions skipped")
    if not report["versions"]:
        console.print("No reviewed task has a prediction: nothing to evaluate.")
        return
    console.print(_summary_table(report))
    w = report["time_without_prediction"]
    console.print(f"median s/task annotated without any prediction: {fmt(w['median_seconds'], 'sec')} "
                  f"({w['tasks']:,} tasks)")
    for v, f in report["versions"].items():
        for table in _label_tables(v, f):
            console.print(table)
    if "compare" in report:
        console.print(_compare_table(report["compare"]))
    if "suspects" in report:
        console.print(_suspects_table(report["suspects"], suspects_shown) if report["suspects"] else
                      "Suspects: none (no confident prediction deleted or relabeled, no doubted box kept)")
