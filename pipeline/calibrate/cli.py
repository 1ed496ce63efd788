"""``label-factory calibrate``: thresholds from a Label Studio project's reviewed tasks (pipeline/calibrate/).

Wired into pipeline/cli.py through its tuple of optional sub-command modules (``add_parser``). Connection
options and project lookup are those of ``predict``, ``export`` and ``evaluate`` (pipeline/predict/cli.py)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from pipeline import options
    from pipeline.calibrate import FOLDS, MIN_BOXES
    from pipeline.predict.cli import add_connection_args

    p = subparsers.add_parser(
        "calibrate", help="choose per-label thresholds from reviewed tasks for a target precision",
        description="Choose each label's grounding and verify thresholds and the filter threshold that find the "
                    "most annotated boxes at precision >= --target-precision, from the Label Studio project's "
                    "reviewed tasks; report what to expect (k-fold cross-validation by task) and write them to "
                    "<project>.calibration.yaml next to the YAML, where the backend, run and predict read them.")
    p.add_argument("--project", "-p", required=True, help="project YAML (the calibration file goes next to it)")
    add_connection_args(p)
    p.add_argument("--target-precision", type=float, required=True, metavar="P",
                   help="the box precision to reach, e.g. 0.9")
    p.add_argument("--folds", type=int, default=FOLDS, help=f"cross-validation folds (default {FOLDS})")
    p.add_argument("--min-boxes", type=int, default=MIN_BOXES,
                   help=f"reviewed boxes a label needs to be calibrated (default {MIN_BOXES})")
    p.add_argument("--iou", type=float, default=0.5, help="IoU at which a box matches an annotated one (default 0.5)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="tasks run at a time (default: PREDICT_CONCURRENCY, as in the backend, or 4)")
    p.add_argument("--page-size", type=int, default=200, help="reviewed tasks listed per request (default 200)")
    p.add_argument("--guarantee", action="store_true",
                   help="risk-controlled thresholds: precision >= --target-precision on new tasks with probability "
                        ">= 1 - --delta (fixed-sequence binomial tests; the filter and, with verify on, the grounding "
                        "threshold stay as they are)")
    p.add_argument("--delta", type=float, default=None, metavar="D",
                   help="with --guarantee: the risk allowed, per label (default 0.1)")
    p.add_argument("--route", action="store_true",
                   help="calibrate the routing band instead (route.per_label: floor and accept of each label, "
                        "pipeline/calibrate/band.py) from the route student's boxes on the reviewed tasks")
    p.add_argument("--keep-recall", type=float, default=None, metavar="R",
                   help="with --route: the share of the student's right boxes the floor keeps (default 0.98)")
    p.add_argument("--to-cascade", type=float, default=None, metavar="S",
                   help="with --route: the floors are raised until at most this share of the reviewed images would go "
                        "through the whole cascade (more than route.max_uncertain boxes in their bands; default 0.1)")
    p.add_argument("--dry-run", action="store_true",
                   help="show old vs new thresholds and the expected effect; write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    options.add_no_cache(p)
    p.set_defaults(func=cmd_calibrate)
    return p


def _check(args) -> str:
    if not 0 < args.target_precision <= 1:
        return "--target-precision must be in (0, 1]"
    if args.folds < 2:
        return "--folds must be at least 2 (one fold to choose on, one to check on)"
    if args.min_boxes < 1 or args.page_size < 1 or (args.concurrency is not None and args.concurrency < 1):
        return "--min-boxes, --page-size and --concurrency must be at least 1"
    if not 0 < args.iou <= 1:
        return "--iou must be in (0, 1]"
    if args.delta is not None and not args.guarantee:
        return "--delta needs --guarantee"
    if args.delta is not None and not 0 < args.delta < 1:
        return "--delta must be in (0, 1)"
    if args.keep_recall is not None and not args.route:
        return "--keep-recall needs --route"
    if args.keep_recall is not None and not 0 < args.keep_recall <= 1:
        return "--keep-recall must be in (0, 1]"
    if args.to_cascade is not None and not args.route:
        return "--to-cascade needs --route"
    if args.to_cascade is not None and not 0 <= args.to_cascade <= 1:
        return "--to-cascade must be in [0, 1]"
    return ""


def cmd_calibrate(args) -> int:
    import httpx
    from label_studio_sdk.core.api_error import ApiError
    from label_studio_sdk.label_interface import LabelInterface
    from tqdm import tqdm

    from pipeline import options
    from pipeline.calibrate import thresholds_file
    from pipeline.calibrate.candidates import INCLUDE, collect, labels_to_calibrate
    from pipeline.calibrate.report import calibrate, print_report
    from pipeline.config import load_project
    from pipeline.evaluate.listing import list_reviewed_tasks
    from pipeline.labelstudio.target import find_target
    from pipeline.model_version import model_version
    from pipeline.predict.cli import connect_project
    from pipeline.predict.job import JobError
    from pipeline.predict.runner import fetcher

    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options.apply_no_cache(args)
    if log.getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per page and image otherwise
    from pipeline.calibrate.band import student_config
    project_cfg = load_project(args.project)
    if args.route and project_cfg.route is None:
        print(f"error: --route: {args.project} has no route section (route: {{student: <weights>}})", file=sys.stderr)
        return 2
    cfg = student_config(project_cfg) if args.route else project_cfg  # --route: the student's boxes are the candidates
    url = None
    bar = tqdm(desc="reviewed tasks", unit="task", disable=args.quiet)
    try:
        client, url, api_key, project_id = connect_project(args)
        project = client.projects.get(project_id)
        try:
            target = find_target(LabelInterface(config=project.label_config), cfg)
        except ValueError as e:  # UnsupportedConfig
            raise JobError(f"Label Studio project {project_id}: {e}") from None
        labels = labels_to_calibrate(cfg, target)
        if not labels:
            raise JobError(f"no label of {args.project} is both grounded (queries) and in the labeling config")
        tasks = list_reviewed_tasks(client, project_id, args.page_size, on_total=lambda n: bar.reset(total=n),
                                    include=INCLUDE)
        got = collect(tasks, cfg, target, fetcher(cfg, url, api_key), args.concurrency, on_done=lambda: bar.update(1))
    except JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ApiError as e:
        print(f"error: Label Studio answered HTTP {e.status_code}: {str(e.body)[:300]}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:
        where = url or args.label_studio_url or "LABEL_STUDIO_URL"
        print(f"error: cannot reach Label Studio at {where}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    for f in got.failed:
        print(f"task {f['task']}: left out: {f['reason']}", file=sys.stderr)
    if not got.reviewed:
        print(f"error: Label Studio project {project_id} has no reviewed task to calibrate on "
              f"({len(got.failed)} failed)", file=sys.stderr)
        return 2
    from pipeline.calibrate.guarantee import DELTA
    delta = (args.delta or DELTA) if args.guarantee else None
    if args.route:
        return _write_band(args, project_cfg, got, labels, delta, f"{url}/projects/{project_id}")
    report, new = calibrate(got.reviewed, labels, args.target_precision, cfg.thresholds, min_boxes=args.min_boxes,
                            k=args.folds, match_iou=args.iou, delta=delta)
    versions = (model_version(cfg), model_version(cfg.model_copy(update={"thresholds": new})))
    report.update({"project": {"id": project_id, "url": f"{url}/projects/{project_id}"},
                   "failed": got.failed, "answer_cache": got.cache,
                   "model_version": {"before": versions[0], "after": versions[1]}})
    calibrated = [lab for lab, r in report["labels"].items() if r["status"] == "calibrated"]
    written = None
    if calibrated and not args.dry_run:
        written = thresholds_file.write(args.project, report, f"{url}/projects/{project_id}", versions)
    report["written"] = None if written is None else str(written)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print_report(report)
        c = got.cache
        print(f"model answers: {c.get('hits', 0)} from the answer cache, {c.get('misses', 0)} asked of the models")
        _say_written(calibrated, args.dry_run, written, versions)
    return 0 if calibrated else 1


def _write_band(args, cfg, got, labels, delta, source: str) -> int:
    """``calibrate --route``: each label's band from the student's boxes, printed and written."""
    from pipeline.calibrate import thresholds_file
    from pipeline.calibrate.band import KEEP_RECALL, TO_CASCADE, fit_band
    from pipeline.model_version import model_version
    keep = args.keep_recall or KEEP_RECALL
    share = TO_CASCADE if args.to_cascade is None else args.to_cascade
    bands, found = fit_band(got.reviewed, labels, args.target_precision, delta, keep, args.iou, route=cfg.route,
                            verify_on=cfg.stages.verify, to_cascade=share)
    route = cfg.route.model_dump()
    route["per_label"].update({lab: b.model_dump() for lab, b in bands.items()})
    after = cfg.model_copy(update={"route": type(cfg.route).model_validate(route)})
    versions = (model_version(cfg), model_version(after))
    settings = {"target_precision": args.target_precision, "delta": delta, "keep_recall": keep,
                "to_cascade": share, "reviewed_tasks": len(got.reviewed)}
    written = None
    if bands and not args.dry_run:
        written = thresholds_file.write_route(args.project, bands, found, settings, source, versions)
    if args.json:
        print(json.dumps({**settings, "labels": found, "written": None if written is None else str(written),
                          "model_version": {"before": versions[0], "after": versions[1]}}, indent=1, default=str))
        return 0 if bands else 1
    for lab, f in found.items():
        if "band" in f:
            b = f["band"]
            print(f"{lab}: floor {b['floor']:g}, accept {b['accept']:g} ({f['right']} of {f['boxes']} student boxes "
                  "right on the reviewed tasks)")
            if "floor_raised" in f:
                r = f["floor_raised"]
                print(f"  floor raised from {r['from']:g} (--keep-recall {keep:g}) so that {f['to_cascade']:.0%} of "
                      f"the reviewed images go through the whole cascade (--to-cascade {share:g}); it keeps "
                      f"{r['right_kept']:.0%} of the student's right boxes")
            elif f["to_cascade"] > share:
                print(f"  {f['to_cascade']:.0%} of the reviewed images would still go through the whole cascade "
                      f"(--to-cascade {share:g}): the labels calibrate leaves as they are hold too many band boxes")
        else:
            print(f"{lab}: refused: {f['refused']} ({f['right']} of {f['boxes']} student boxes right)")
    _say_written(bands, args.dry_run, written, versions)
    return 0 if bands else 1


def _say_written(calibrated, dry_run: bool, written, versions: tuple[str, str]) -> None:
    if not calibrated:
        print("nothing calibrated: every label was refused (reasons above); nothing written")
    elif dry_run:
        print(f"dry run: nothing written; model_version would become {versions[1]} (now {versions[0]})")
    else:
        print(f"written: {written} (model_version {versions[0]} -> {versions[1]}; the backend picks it up "
              "on its next request, `predict` and `run` on their next start)")
