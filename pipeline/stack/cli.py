"""`label-factory up` arguments."""
from __future__ import annotations

from pathlib import Path

DEFAULT_PROJECT = Path(__file__).resolve().parents[2] / "projects" / "stop-signs.yaml"


def add_parser(sub) -> None:
    s = sub.add_parser("up", help="start Label Studio + the ML backend with a sample project (Ctrl-C stops)")
    s.add_argument("--project", default=str(DEFAULT_PROJECT), help="project YAML (default: stop-signs)")
    s.add_argument("--models", choices=["real", "tiny"], default="real",
                   help="real: the YAML's models (checked first); tiny: random tiny models built locally")
    s.add_argument("--masks", choices=["brush", "polygon"], default=None,
                   help="a sample project whose output is masks (BrushLabels / PolygonLabels, titled "
                        "PROJECT-brush / -polygon) with the click, box and find-similar tools; tiny models: a tiny SAM")
    s.add_argument("--root", default="~/.local/share/label-factory/stack",
                   help="state folder: Label Studio's SQLite and media, model dir, logs")
    s.add_argument("--tiny-cache", default="~/.cache/label-factory/tiny-models")
    s.add_argument("--host", default="127.0.0.1",
                   help="bind address of Label Studio and the ML backend (0.0.0.0: every interface, for people "
                        "labeling from other machines; default: this machine only)")
    s.add_argument("--port", type=int, default=8080, help="Label Studio port (a free one if taken)")
    s.add_argument("--backend-port", type=int, default=9090, help="ML backend port (a free one if taken)")
    s.add_argument("--timeout", type=float, default=300, help="seconds to wait for each service / predictions")
    s.add_argument("--exit-when-ready", action="store_true", help="stop everything once predictions are in")
    s.set_defaults(func=_run)


def _run(args) -> int:
    from pipeline.stack.up import run_up
    return run_up(args)
