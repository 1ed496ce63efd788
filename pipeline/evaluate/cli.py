"""``label-factory evaluate``: a Label Studio project's predictions against its reviewed annotations.

Wired into pipeline/cli.py through its tuple of optional sub-command modules (``add_parser``).
Connection options and project lookup are the ones ``predict`` and ``export`` use (pipeline/predict/cli.py)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from pipeline.predict.cli import add_connection_args

    p = subparsers.add_parser(
        "evaluate", help="measure a Label Studio project's predictions against its reviewed annotations",
        description="Per model_version and label: box precision/recall/F1/AP, the filter stage's image-level "
                    "precision/recall, what annotators did with predicted boxes, score calibration and "
                    "labeling time. Writes report.json and report.html and prints tables.")
    p.add_argument("--project", "-p", default=None,
                   help="project YAML (its project_name finds the Label Studio project; not needed with --ls-project)")
    add_connection_args(p)
    p.add_argument("--out", default="evaluate-report", help="folder for report.json and report.html "
                                                            "(default: ./evaluate-report)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU at which a predicted box matches an annotated one "
                                                          "(default 0.5)")
    p.add_argument("--keep-iou", type=float, default=0.9,
                   help="IoU at which a matched box counts as kept rather than moved (default 0.9)")
    p.add_argument("--model-version", action="append", default=None, metavar="V",
                   help="evaluate only this model_version (repeatable; default: every one found)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="two model_versions side by side on the tasks both predicted")
    p.add_argument("--suspects", action="store_true",
                   help="list annotated boxes the models strongly disagree with, with links to the tasks")
    p.add_argument("--suspect-score", type=float, default=0.9,
                   help="a predicted box this confident that the annotator deleted or relabeled is a suspect "
                        "(default 0.9)")
    p.add_argument("--suspect-doubt", type=float, default=0.1,
                   help="an annotated box a same-label prediction matched at most this confidently is a suspect "
                        "(default 0.1)")
    p.add_argument("--bins", type=int, default=10, help="reliability curve bins (default 10)")
    p.add_argument("--page-size", type=int, default=1000, help="tasks per page (default 1000)")
    p.add_argument("--no-html", action="store_true", help="write report.json only")
    p.add_argument("--json", action="store_true", help="print report.json instead of the tables")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
    return p


def _check(args) -> str:
    if not (0 < args.iou <= args.keep_iou <= 1):
        return "need 0 < --iou <= --keep-iou <= 1"
    if not (0 <= args.suspect_doubt <= 1 and 0 <= args.suspect_score <= 1):
        return "--suspect-score and --suspect-doubt are scores in [0, 1]"
    if args.bins < 1 or args.page_size < 1:
        return "--bins and --page-size must be at least 1"
    return ""


def fetch_tasks(client, project_id: int, layout, page_size: int, progress: bool):
    """(reviewed tasks parsed for evaluation, tasks listed, seconds listing + parsing took)."""
    from tqdm import tqdm

    from pipeline.evaluate.listing import list_reviewed_tasks
    from pipeline.evaluate.tasks import parse_task

    bar = tqdm(desc="tasks", unit="task", disable=not progress)
    t0 = time.perf_counter()
    tasks, seen = [], set()
    try:
        for raw in list_reviewed_tasks(client, project_id, page_size, on_total=lambda n: bar.reset(total=n)):
            if raw.get("id") in seen:  # a task annotated while we page shifts the pages: seen twice
                continue
            seen.add(raw.get("id"))
            task = parse_task(raw, layout)
            if task.truth is not None:  # only cancelled annotations: not reviewed
                tasks.append(task)
            bar.update(1)
    finally:
        bar.close()
    return tasks, len(seen), time.perf_counter() - t0


def _evaluate_video(args, client, project, from_name: str) -> int:
    """A video project: tracking quality (MOTA, IDF1, HOTA) per model_version (pipeline/evaluate/video.py)."""
    from pipeline.atomic import save_text
    from pipeline.evaluate.listing import list_reviewed_tasks
    from pipeline.evaluate.video import evaluate_video_tasks, lines

    tasks = list_reviewed_tasks(client, project.id, args.page_size)
    report = evaluate_video_tasks(tasks, from_name, versions=args.model_version, iou=args.iou)
    report["project"] = {"id": project.id, "title": project.title, "control": from_name}
    report["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    save_text(out / "report.json", text)
    print(text if args.json else "\n".join(lines(report) + [f"report.json: {out / 'report.json'}"]))
    return 0


def cmd_evaluate(args) -> int:
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from pipeline.atomic import save_text
    from pipeline.evaluate import report_html
    from pipeline.evaluate.report import evaluate_tasks, print_report
    from pipeline.evaluate.suspects import find_suspects
    from pipeline.labelstudio import UnsupportedConfig, truth
    from pipeline.predict.cli import connect_project
    from pipeline.predict.job import JobError

    if log.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per page otherwise
    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    url = None
    try:
        client, url, _, project_id = connect_project(args)
        project = client.projects.get(project_id)
        try:
            layout = truth.layout_of(project.label_config)
        except UnsupportedConfig as e:
            raise JobError(f"Label Studio project {project_id}: nothing to evaluate: {e}") from None
        if layout.media == "video":
            return _evaluate_video(args, client, project, layout.outputs[0].name)
        tasks, listed, seconds_listing = fetch_tasks(client, project_id, layout, args.page_size,
                                                     progress=not args.quiet)
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ApiError as e:  # Label Studio refused: wrong project id, token, permissions
        print(f"error: Label Studio answered HTTP {e.status_code}: {str(e.body)[:300]}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:  # down, wrong URL, timed out (after the SDK's retries)
        where = url or args.label_studio_url or "LABEL_STUDIO_URL"
        print(f"error: cannot reach Label Studio at {where}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        report, records = evaluate_tasks(tasks, match_iou=args.iou, keep_iou=args.keep_iou,
                                         versions=args.model_version, compare=tuple(args.compare or ()) or None,
                                         bins=args.bins)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report["tasks"]["listed"] = listed
    report["project"] = {"id": project_id, "title": project.title, "url": f"{url}/projects/{project_id}",
                         "control": ", ".join(o.name for o in layout.outputs)}
    report["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if args.suspects:
        report["suspects"] = find_suspects((r for rs in records.values() for r in rs), url=url,
                                           project_id=project_id, confident=args.suspect_score,
                                           doubtful=args.suspect_doubt)
    report["timing"] = {"page_size": args.page_size,
                        "seconds_listing": round(seconds_listing, 3),
                        "seconds_evaluating": round(time.perf_counter() - t0, 3)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    save_text(out / "report.json", text)
    if not args.no_html:
        page = report_html.render(report)
        save_text(out / "report.html", page)
    if args.json:
        print(text)
        return 0
    print_report(report)
    tm = report["timing"]
    print(f"{listed:,} tasks listed in {tm['seconds_listing']:.1f} s, evaluated in "
          f"{tm['seconds_evaluating']:.1f} s, written in {time.perf_counter() - t0 - tm['seconds_evaluating']:.1f} s")
    print(f"report.json: {out / 'report.json'}" + ("" if args.no_html else f"\nreport.html: {out / 'report.html'}"))
    return 0
