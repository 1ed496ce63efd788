"""``label-factory import``.

Wiring into pipeline/cli.py::

    from pipeline.importer import cli as importer_cli
    importer_cli.add_parser(subparsers)        # adds the "import" sub-command
    ...
    args = parser.parse_args(argv); return args.func(args)   # or importer_cli.run(args)
"""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.importer.sources import ALL


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--project", "-p", required=True, help="project YAML")
    from pipeline.settings import LabelStudio
    ls = LabelStudio.read()
    p.add_argument("--label-studio-url", default=None,
                   help="Label Studio URL (env LABEL_STUDIO_URL); without it, images are only downloaded")
    p.add_argument("--api-key", default=None,
                   help="Label Studio API key / personal access token (env LABEL_STUDIO_API_KEY)")
    p.add_argument("--sources", default=",".join(ALL), help=f"comma-separated, from {','.join(ALL)}")
    p.add_argument("--max-per-query", type=int, default=20, help="images per source per query (default 20)")
    p.add_argument("--dry-run", action="store_true", help="search and report only: no downloads, no Label Studio")
    p.add_argument("--connect-backend", metavar="URL",
                   help="register this ML backend on the project and ask Label Studio for predictions")
    p.add_argument("--data-root", help="override the YAML's data_root")
    p.add_argument("--masks", choices=["brush", "polygon"], default=None,
                   help="the project's labeling config takes masks (label-factory config --masks)")
    p.add_argument("--storage", choices=["upload", "local-files"], default="upload",
                   help="upload files to Label Studio (default), or reference them through a local-files "
                        "storage when Label Studio shares the disk")
    p.add_argument("--local-files-root", default=ls.local_files_document_root,
                   help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (for --storage local-files)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--per-host-interval", type=float, default=0.25,
                   help="min seconds between requests to one host (default 0.25)")
    p.add_argument("--retries", type=int, default=4, help="tries per request on 429/5xx (default 4)")
    p.add_argument("--max-bytes", type=int, default=25 * 1024 * 1024, help="size cap per image (default 25 MiB)")
    p.add_argument("--phash-distance", type=int, default=6,
                   help="max pHash Hamming distance for a perceptual duplicate (default 6; -1 = off)")
    p.add_argument("--ddg-backoff", type=float, default=5.0,
                   help="first wait after a DuckDuckGo rate limit, doubled per retry (default 5 s)")
    p.add_argument("--ddg-attempts", type=int, default=3,
                   help="tries per query while DuckDuckGo rate-limits, then the source gives up (default 3)")
    p.add_argument("--videos", action="append", default=[], metavar="DIR_OR_URL",
                   help="frames of these videos (a folder, a file or an http(s) URL; repeatable) instead of a web "
                        "search: every scene's first frame and every --frame-stride frames, near-duplicates dropped")
    p.add_argument("--frame-stride", type=int, default=30, help="frames between two picks within a scene "
                                                                "(default 30)")
    p.add_argument("--frames-per-video", type=int, default=50, help="at most this many frames per video "
                                                                    "(default 50; the stride widens to fit)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="log each query and each rejected image")
    p.set_defaults(default_log_level="WARNING")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("import", help="gather web images per bucket into a Label Studio project",
                              description=__doc__.splitlines()[0])
    _configure(p)
    p.set_defaults(func=run)
    return p


def render(summary, stream=None) -> None:
    """Rich table when possible, plain lines otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print("\n".join(summary.lines()), file=stream or sys.stderr)
        return
    console = Console(file=stream or sys.stderr)
    t = Table(title="label-factory import" + (" (dry run)" if summary.dry_run else ""), show_header=True)
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("found", str(summary.found))
    if summary.known:
        t.add_row("already in manifest", str(summary.known))
    t.add_row("downloaded (new)", str(summary.downloaded))
    t.add_row("duplicates", str(summary.n_duplicates))
    for k, n in sorted(summary.duplicates.items()):
        t.add_row(f"  {k}", str(n))
    t.add_row("rejected", str(summary.n_rejected))
    for k, n in sorted(summary.rejected.items()):
        t.add_row(f"  {k}", str(n))
    for bucket, n in sorted(summary.per_bucket.items()):
        t.add_row(f"  {'new URLs' if summary.dry_run else 'new'} in {bucket}", str(n))
    t.add_row("imported", str(summary.imported))
    if summary.already_imported:
        t.add_row("already in Label Studio", str(summary.already_imported))
    console.print(t)
    s = Table(title="sources", show_header=True)
    for col in ("source", "queries", "found", "status"):
        s.add_column(col)
    for st in summary.sources.values():
        state = f"[red]gave up[/red]: {st.gave_up}" if st.gave_up else "ok"
        if st.failed_queries:
            state += f" ({st.failed_queries} failed queries)"
        if st.skipped_queries:
            state += f" ({st.skipped_queries} not searched)"
        s.add_row(st.name, str(st.queries), str(st.found), state)
    console.print(s)
    for st in summary.sources.values():
        for note in st.notes:
            console.print(f"note ({st.name}): {note}", markup=False, highlight=False)
    for line in ([f"Label Studio: {summary.label_studio}"] if summary.label_studio else []) + \
                ([f"ML backend: {summary.backend}"] if summary.backend else []):
        console.print(line, markup=False, highlight=False)
    for w in summary.warnings:
        console.print(f"warning: {w}", style="yellow", markup=False, highlight=False)


def run(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError, load_project
    from pipeline.importer.runner import ImportOptions, run_import

    try:
        cfg = load_project(args.project)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opts = ImportOptions(
        sources=[s for s in args.sources.split(",") if s.strip()], max_per_query=args.max_per_query,
        dry_run=args.dry_run, data_root=args.data_root, label_studio_url=args.label_studio_url,
        api_key=args.api_key, storage=args.storage, local_files_root=args.local_files_root,
        connect_backend=args.connect_backend, concurrency=args.concurrency,
        per_host_interval=args.per_host_interval, retries=args.retries, max_bytes=args.max_bytes,
        phash_distance=args.phash_distance, progress=not args.no_progress, ddg_backoff=args.ddg_backoff,
        ddg_attempts=args.ddg_attempts, masks=args.masks, videos=args.videos, frame_stride=args.frame_stride,
        frames_per_video=args.frames_per_video)
    try:
        summary = run_import(cfg, opts)
    except ValueError as e:       # unknown source, broken manifest, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - Label Studio / SDK errors: one line, traceback with -v
        if args.verbose:
            raise
        print(f"error: {type(e).__name__}: {str(e)[:1000]}", file=sys.stderr)
        return 1
    render(summary)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    return 1 if summary.backend.startswith("FAILED") else 0

