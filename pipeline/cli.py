"""`label-factory` command line."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from pipeline import options, settings
from pipeline.config import ConfigError, calibration_path, env_overrides, load_project
from pipeline.logs import cli_level, setup_logging
from pipeline.model_version import model_version

log = logging.getLogger("label-factory")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("label-factory")
    except Exception:
        return "0+unknown"


def cmd_project(args) -> int:
    cfg = load_project(args.project)
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    print(json.dumps({"prompts": {"filter": cfg.prompt("filter"), "verify": cfg.prompt("verify")},
                      "query_labels": cfg.query_labels(), "fingerprint": cfg.fingerprint(),
                      "model_version": model_version(cfg), "env_overrides": sorted(env_overrides()),
                      "calibration_file": str(side) if (side := calibration_path(args.project)).is_file() else None},
                     indent=2))
    return 0


def cmd_config(args) -> int:
    from pipeline.labelstudio.labeling_config import labeling_config, video_config
    if args.video:
        sys.stdout.write(video_config(load_project(args.project)))
        return 0
    sys.stdout.write(labeling_config(load_project(args.project), interactive_prompt=not args.no_prompt,
                                     masks=args.masks))
    return 0


def cmd_run(args) -> int:
    from pipeline.cascade import Pipeline
    from pipeline.labelstudio.labeling_config import local_files_url
    from pipeline.predict.folder import list_images, run_folder, write_outputs

    options.apply_no_cache(args)
    cfg = load_project(args.project)
    images = list_images(Path(args.images), args.limit)
    if not images:
        log.error("no images (%s) under %s", ", ".join(sorted({".jpg", ".png", "..."})), args.images)
        return 2
    root = Path(args.document_root or Path(args.images).resolve().parent)
    try:  # before any model loads: every task URL must lie under Label Studio's document root
        for path in images:
            local_files_url(path, root)
    except ValueError as e:
        log.error("--document-root: %s", e)
        return 2
    pipe = Pipeline(cfg).load()
    out = run_folder(cfg, images, pipe, root, model_version(cfg), progress=not args.quiet, masks=args.masks)
    paths = write_outputs(out, Path(args.out))
    c = out.record["counts"]
    print(f"{c['labeled']}/{c['images']} images labeled, {c['boxes']} boxes, {c['skipped']} skipped")
    for reason in out.record["skipped"]:
        print(f"  skipped: {reason['reason']}")
    print("seconds per image per stage:", json.dumps(out.record["timings"]["seconds_per_image"]))
    cache = out.record["answer_cache"]
    print(f"answer cache: {cache['hits']} answer(s) reused, {cache['misses']} asked of the models"
          + ("" if cache["enabled"] else " (off)"))
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


# module -> the sub-commands it adds, named here so that one whose module cannot be imported is still listed
COMMANDS = {
    "pipeline.importer.cli": ("import",),
    "pipeline.references.cli": ("identify",),
    "pipeline.stack": ("up",),
    "pipeline.predict.cli": ("predict",),
    "pipeline.distill.cli": ("export", "train"),
    "pipeline.evaluate.cli": ("evaluate",),
    "pipeline.calibrate.cli": ("calibrate",),
    "pipeline.doctor": ("doctor",),
    "pipeline.synthetic.cli": ("world",),
}


def _unavailable(module: str, reason: str) -> int:
    print(f"error: this command is unavailable: {module} cannot be imported: {reason}", file=sys.stderr)
    return 2


def _yaml_values(path) -> dict:
    """The project YAML's values of the fields the LF_* overrides replace (variable -> value)."""
    data = load_project(path, environ={}).model_dump(mode="json")["providers"]
    return {var: data[provider][key] for var, (provider, key) in settings.Models.override_fields().items()
            if data.get(provider, {}).get(key) is not None}


def cmd_settings(args) -> int:
    project = args.project or settings.Paths.read().project_config
    yaml_values, problems = None, []
    try:
        yaml_values = _yaml_values(project) if project else None
    except ConfigError as e:  # the settings are still worth seeing
        problems.append(str(e))
    found = settings.effective(yaml_values=yaml_values, yaml_source=f"project YAML {project}")
    problems += [e.error for e in found if e.error]
    if args.json:
        print(json.dumps([e.as_json() for e in found], indent=2))
    else:
        width = max(len(e.variable.name) for e in found)
        group = None
        for e in found:
            if e.variable.group is not group:
                group = e.variable.group
                print(f"{'' if e is found[0] else chr(10)}{group.title}")
            print(f"  {e.variable.name:<{width}}  {e.shown():<40}  {e.source}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="label-factory", description=__doc__)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--log-level", default=None, type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                   help="default: INFO (for import: WARNING unless -v)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="pre-annotate a folder of images")
    s.add_argument("--project", required=True, help="project YAML")
    s.add_argument("--images", required=True, help="folder of images (searched recursively)")
    s.add_argument("--out", required=True, help="output folder: coco.json, tasks.json, run.json")
    s.add_argument("--limit", type=int, default=None, help="at most N images")
    s.add_argument("--document-root", default=None,
                   help="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT for task URLs (default: the images folder's parent)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--masks", choices=["brush", "polygon"], default=None,
                   help="segment every kept box: tasks.json gets BrushLabels / PolygonLabels (for the config "
                        "`label-factory config --masks ...` makes) and coco.json RLE segmentation")
    options.add_no_cache(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("project", help="print the resolved project config")
    s.add_argument("--project", required=True)
    s.set_defaults(func=cmd_project)

    s = sub.add_parser("config", help="print the Label Studio labeling config for the project")
    s.add_argument("--project", required=True)
    s.add_argument("--no-prompt", action="store_true", help="leave out the interactive text prompt")
    s.add_argument("--masks", choices=["brush", "polygon"], default=None,
                   help="masks instead of boxes: BrushLabels or PolygonLabels, with the click / box / "
                        "find-similar smart tools")
    s.add_argument("--video", action="store_true",
                   help="a video project: <Video> with a <VideoRectangle> (one track per object, keyframes that "
                        "Label Studio interpolates) and the labels in a <Labels>; tasks need $video and $fps")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("settings", help="every environment variable label-factory reads: its value now and "
                                        "where it came from (secrets only as set or not)")
    s.add_argument("--project", default=None,
                   help="project YAML whose values the unset LF_* overrides show (default: PROJECT_CONFIG)")
    s.add_argument("--json", action="store_true", help="one JSON object per variable (with its type, default "
                                                       "and meaning)")
    s.set_defaults(func=cmd_settings)

    for module, names in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - shown as the command's help and its error, never dropped
            reason = f"{type(e).__name__}: {e}"
            for name in names:
                s = sub.add_parser(name, help=f"UNAVAILABLE: {module} cannot be imported: {reason}")
                s.set_defaults(func=lambda args, module=module, reason=reason: _unavailable(module, reason))
            continue
        mod.add_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(cli_level(args))
    from pipeline.providers.hub import ModelUnavailable
    from pipeline.stack.models import ModelsUnavailable
    try:
        return int(args.func(args) or 0)
    except (ConfigError, settings.SettingsError, ModelsUnavailable, ModelUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
