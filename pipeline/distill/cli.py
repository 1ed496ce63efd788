"""``label-factory export`` and ``label-factory train`` (wired into pipeline/cli.py's optional sub-commands).

The Label Studio connection options and project lookup are the ones ``label-factory predict`` uses
(pipeline/predict/cli.py, batch.py); images come through the backend's guarded fetcher."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    from pipeline.distill import DEFAULT_MODEL, FORMATS
    from pipeline.predict.cli import add_connection_args

    p = subparsers.add_parser(
        "export", help="reviewed Label Studio labels -> YOLO or COCO data set with a manifest",
        description="Export a Label Studio project's reviewed boxes (latest submitted, non-cancelled annotation per "
                    "task; optionally confident predictions as pseudo-labels) with their EXIF-corrected images, "
                    "split train/val/test by task id.")
    p.add_argument("--out", "-o", required=True, help="output folder (replaced if it holds an earlier export)")
    p.add_argument("--format", choices=FORMATS, default="yolo", help="yolo (data.yaml) or coco (default yolo)")
    p.add_argument("--project", "-p", default=None, help="project YAML (its project_name finds the Label Studio "
                                                         "project when --ls-project is not given)")
    add_connection_args(p)
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test ratios (default 0.8,0.1,0.1)")
    p.add_argument("--classes", default=None,
                   help="comma-separated labels, in class-id order (default: the labels of the labeling config's "
                        "output controls)")
    p.add_argument("--pseudo-labels", metavar="MODEL_VERSION", default=None,
                   help="tasks without an annotation contribute this model_version's predictions (marked pseudo)")
    p.add_argument("--pseudo-min-score", type=float, default=0.5,
                   help="pseudo-label boxes need at least this score (default 0.5)")
    p.add_argument("--concurrency", type=int, default=4, help="images fetched at a time (default 4)")
    p.add_argument("--video-stride", type=int, default=10,
                   help="a video project: every Nth frame becomes an image with its interpolated boxes (default 10)")
    p.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "train", help="train the student detector (ultralytics YOLO) on an export, or a project's from Label Studio",
        description="--data/--out: train a YOLO student on a `label-factory export --format yolo` folder; writes "
                    "weights, metrics.json (val mAP50, mAP50-95, per-class P/R) and a model card to --out. "
                    "--project: what Label Studio's Start Training runs: export the project's reviewed tasks, train "
                    "a student (LF_TRAIN_* settings), and promote it to the weights the project YAML serves only if "
                    "its held-out AP beats the served student's (one training at a time per project).")
    p.add_argument("--data", "-d", default=None, help="export folder (data.yaml + manifest.json)")
    p.add_argument("--out", "-o", default=None, help="run folder (weights/, metrics.json, model_card.*)")
    p.add_argument("--project", "-p", default=None,
                   help="project YAML: train its Label Studio project's student and promote it if it is better "
                        "(instead of --data/--out)")
    add_connection_args(p)
    p.add_argument("--run", default=None, help=argparse.SUPPRESS)  # runs.start: the run folder it made
    p.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)  # runs.start: the lock it took
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"checkpoint or architecture config (default {DEFAULT_MODEL}, pretrained; e.g. yolo11s.pt, "
                        "yolo11n.yaml for random initial weights)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=640, help="training image size (default 640)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--workers", type=int, default=2, help="data loader processes (default 2)")
    p.add_argument("--patience", type=int, default=50, help="stop after N epochs without improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", dest="plots", action="store_false", help="no plots (and no font download)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from its last epoch")
    p.set_defaults(func=cmd_train)


def cmd_export(args) -> int:
    from pipeline.distill.export import ExportError, export_project
    from pipeline.distill.split import parse_ratios
    from pipeline.labelstudio.media import fetch_image
    from pipeline.predict.cli import connect_project
    from pipeline.predict.job import JobError

    try:
        ratios = parse_ratios(args.split)
        client, url, api_key, project_id = connect_project(args)

        def fetch(image_url, task_id):
            return fetch_image(image_url, task_id, label_studio_url=url, api_key=api_key)

        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
        from pipeline.labelstudio import UnsupportedConfig, truth
        try:
            video = truth.layout_of(client.projects.get(project_id).label_config).media == "video"
        except UnsupportedConfig:
            video = False  # export_project says why
        if video:
            from pipeline.distill.video_export import export_video_project
            from pipeline.labelstudio.media import fetch_file
            from pipeline.video.decode import VideoLimits

            def to_file(video_url, task_id, dest):
                return fetch_file(video_url, dest, task_id, max_bytes=VideoLimits.from_env().max_bytes,
                                  label_studio_url=url, api_key=api_key)
            manifest = export_video_project(client, project_id, Path(args.out), args.format, to_file,
                                            stride=args.video_stride, ratios=ratios, classes=classes,
                                            label_studio_url=url)
            print(json.dumps({k: manifest[k] for k in ("format", "classes", "counts", "boxes_per_class")}, indent=1)
                  if args.json else f"exported video project {project_id} to {Path(args.out).resolve()}: "
                  + ", ".join(f"{s} {c['images']} frames, {c['boxes']} boxes" for s, c in manifest["counts"].items()))
            return 0
        manifest = export_project(client, project_id, Path(args.out), args.format, fetch, ratios=ratios,
                                  classes=classes, pseudo_version=args.pseudo_labels,
                                  pseudo_threshold=args.pseudo_min_score, label_studio_url=url,
                                  concurrency=args.concurrency, progress=not args.quiet)
    except (JobError, ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in ("format", "classes", "counts", "boxes_per_class", "task_ids_sha256")}
    left = manifest["left_out"]
    summary["left_out"] = {**{k: v for k, v in left.items() if k != "image_failed" and v},
                           "image_failed": len(left["image_failed"])}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"exported Label Studio project {project_id} to {Path(args.out).resolve()} ({args.format})")
    for s, c in manifest["counts"].items():
        print(f"  {s}: {c['images']} images, {c['boxes']} boxes, {c['pseudo']} pseudo-labelled")
    print("  classes: " + ", ".join(f"{i}: {n} ({manifest['boxes_per_class'][n]} boxes)"
                                    for i, n in enumerate(manifest["classes"])))
    for k, v in summary["left_out"].items():
        if v:
            print(f"  left out: {k}: {v}")
    for f in left["image_failed"]:
        print(f"    task {f['task']}: {f['reason']}")
    return 0


def cmd_train(args) -> int:
    if args.project:
        if args.data or args.out:
            print("error: --project trains from Label Studio; --data/--out train on an export: give one or the other",
                  file=sys.stderr)
            return 2
        return cmd_train_project(args)
    if not (args.data and args.out):
        print("error: give --data and --out (train on an export), or --project (train from Label Studio)",
              file=sys.stderr)
        return 2
    from pipeline.distill.train import TrainConfig, TrainError, train
    from pipeline.providers.yolo import UltralyticsMissing

    cfg = TrainConfig(data=Path(args.data), out=Path(args.out), model=args.model, epochs=args.epochs,
                      imgsz=args.imgsz, batch=args.batch, device=args.device, workers=args.workers,
                      patience=args.patience, seed=args.seed, plots=args.plots)
    try:
        m = train(cfg, resume=args.resume)
    except (TrainError, UltralyticsMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    print(f"\nval: mAP50 {m['mAP50']:.3f}  mAP50-95 {m['mAP50-95']:.3f}  precision {m['precision']:.3f}  "
          f"recall {m['recall']:.3f}  ({m['val_images']} images)")
    print(f"weights: {out / m['weights']} (sha256 {m['weights_sha256'][:12]})")
    print(f"metrics: {out / 'metrics.json'}; model card: {out / 'model_card.md'}")
    print(f"serve it: providers.grounder: {{kind: student, model: {out / m['weights']}}}")
    return 0


def cmd_train_project(args) -> int:
    from pipeline.distill.job import TrainingError, run_training
    from pipeline.labelstudio.media import fetch_image
    from pipeline.predict.cli import connect_project
    from pipeline.predict.job import JobError

    try:
        client, url, api_key, project_id = connect_project(args)

        def fetch(image_url, task_id):
            return fetch_image(image_url, task_id, label_studio_url=url, api_key=api_key)

        o = run_training(Path(args.project), project_id, client, url, fetch,
                         run=Path(args.run) if args.run else None, lock_fd=args.lock_fd)
    except (JobError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c, s = o["candidate"], o["served"]
    print(f"held-out ({c['images']} images): new student AP50 {c['ap50'] or 0:.3f}  AP50:95 {c['ap50_95'] or 0:.3f}"
          + ("" if s is None else f"; served AP50 {s['ap50'] or 0:.3f}  AP50:95 {s['ap50_95'] or 0:.3f}"))
    print(f"{'promoted' if o['promoted'] else 'not promoted'}: {o['why']}")
    print(f"serving {o['served_weights']} as {o['model_version']}")
    return 0
