"""``label-factory predict``: pre-annotate a Label Studio project as a batch job (pipeline/predict/job.py).

Wired into pipeline/cli.py through its tuple of optional sub-command modules (``add_parser``)."""
from __future__ import annotations

import argparse
import json
import sys

from pipeline import options

TIMEOUT = 120.0  # seconds per Label Studio request of the commands (listing big pages, bulk writes)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="pre-annotate a Label Studio project's tasks (batch job; stores predictions via the API)",
        description="Run the project's cascade over the tasks of its Label Studio project and store the "
                    "predictions there, as the ML backend would, without Label Studio's synchronous "
                    "'Retrieve predictions' (which times out on big projects).")
    p.add_argument("--project", "-p", required=True, help="project YAML")
    add_connection_args(p)
    p.add_argument("--only-missing", action=argparse.BooleanOptionalAction, default=True,
                   help="skip tasks that already have a prediction with the current model_version "
                        "(default: on; --no-only-missing predicts every task again, adding a second prediction)")
    p.add_argument("--limit", type=int, default=None, help="predict at most N tasks (skipped ones do not count)")
    p.add_argument("--batch-size", type=int, default=50,
                   help="tasks per page: listed and predicted together (default 50)")
    p.add_argument("--write-batch", type=int, default=100,
                   help="predictions per Label Studio write (bulk import; default 100)")
    p.add_argument("--write-rate", type=float, default=100.0,
                   help="predictions written per second at most (default 100; 0: no cap)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="tasks predicted at a time (default: PREDICT_CONCURRENCY, as in the backend, or 4)")
    p.add_argument("--dry-run", action="store_true",
                   help="list and count what would be predicted: no models loaded, nothing stored")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--order", choices=["uncertain"], default=None,
                   help="uncertain: afterwards, list the --top unlabeled tasks the models were least sure of (lowest "
                        "prediction score, the task's certainty) and make a Data Manager tab that sorts them first")
    p.add_argument("--top", type=int, default=20, help="tasks listed by --order uncertain (default 20)")
    options.add_no_cache(p)
    add_ray_arguments(p)
    p.set_defaults(func=cmd_predict)
    return p


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """--label-studio-url, --api-key, --ls-project (also used by `label-factory export`)."""
    p.add_argument("--label-studio-url", default=None, help="Label Studio URL (default: env LABEL_STUDIO_URL)")
    p.add_argument("--api-key", default=None,
                   help="legacy token or personal access token (default: env LABEL_STUDIO_API_KEY)")
    p.add_argument("--ls-project", type=int, default=None,
                   help="Label Studio project id (default: the project titled like the YAML's project_name)")


def connection(args) -> tuple[str, str]:
    """(Label Studio URL, API key) from add_connection_args' options or the environment
    (``pipeline.labelstudio.client``: LABEL_STUDIO_URL or _HOST, LABEL_STUDIO_API_KEY or _ACCESS_TOKEN);
    raises JobError when either is missing."""
    from pipeline.labelstudio import client as credentials
    from pipeline.predict.job import JobError

    url = (args.label_studio_url or credentials.label_studio_url()).rstrip("/")
    api_key = args.api_key or credentials.label_studio_api_key()
    if not url or not api_key:
        raise JobError("Label Studio needs a URL and an API key (--label-studio-url/--api-key or "
                       "LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY)")
    return url, api_key


def connect(args):
    """(label-studio-sdk client, URL, API key) from add_connection_args' options: the process's one client for
    them (``pipeline.labelstudio.client``); raises JobError when it cannot be built."""
    from pipeline.labelstudio import client as credentials
    from pipeline.predict.job import JobError

    url, api_key = connection(args)
    try:
        return credentials.client(url, api_key, timeout=TIMEOUT), url, api_key
    except PermissionError as e:  # e.g. an expired personal access token; the reason, never the token
        raise JobError(str(e)) from None


def connect_project(args):
    """(label-studio-sdk client, URL, API key, project id) from add_connection_args' options: --ls-project, or the
    project titled like the --project YAML's project_name (used by `export` and `evaluate`); raises JobError."""
    from pipeline.config import load_project
    from pipeline.predict.job import JobError, find_project_id

    client, url, api_key = connect(args)
    if args.ls_project:
        return client, url, api_key, args.ls_project
    if not getattr(args, "project", None):
        raise JobError("which Label Studio project? pass --ls-project ID or --project YAML (found by its project_name)")
    return client, url, api_key, find_project_id(client, load_project(args.project).project_name)


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (pipeline/predict/ray_job.py)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="spread the job over Ray actors: no ADDRESS starts a local Ray on this machine; "
                        "'auto' or ray://HOST:10001 joins an existing cluster")
    g.add_argument("--actors", type=int, default=None, help="model-holding actors (default: one per GPU, else per CPU)")
    g.add_argument("--cpus-per-actor", type=float, default=None, help="default 1 (with GPUs: a share, 1-4)")
    g.add_argument("--gpus-per-actor", type=float, default=None, help="default 1 when the cluster has GPUs, else 0")
    g.add_argument("--tasks-per-call", type=int, default=4, help="tasks handed to an actor at once (default 4)")


def review_first(client, url: str, project_id: int, top: int) -> dict:
    """--order uncertain: the ``top`` least certain unlabeled tasks (links) and the Data Manager tab sorting them."""
    from pipeline.labelstudio import lsapi

    link = f"{url}/projects/{project_id}/data"
    try:
        tasks = lsapi.most_uncertain(client, project_id, top)
        tab = lsapi.uncertain_tab(client, project_id)
        version = client.projects.get(id=project_id).model_version
    except Exception as e:  # noqa: BLE001 - the predictions are stored; say why there is no list
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    return {"tab": f"{link}?tab={tab}", "model_version": version,
            "tasks": [{**t, "link": f"{link}?task={t['id']}"} for t in tasks]}


def review_lines(found: dict) -> list[str]:
    if "error" in found:
        return [f"--order uncertain: no list: {found['error']}"]
    out = [f"most uncertain unlabeled tasks first (prediction score = the task's certainty, of model_version "
           f"{found['model_version']}); Data Manager tab: {found['tab']}"]
    out += [f"  task {t['id']}  {t['score']:.3f}  {t['link']}" for t in found["tasks"]]
    return out if found["tasks"] else out + ["  (no unlabeled task has a prediction score)"]


def cmd_predict(args) -> int:
    from pipeline import options
    from pipeline.predict import job as batch
    from pipeline.predict import runner

    options.apply_no_cache(args)
    try:
        client, url, api_key = connect(args)
    except batch.JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in ("limit", "batch_size", "concurrency", "actors", "tasks_per_call", "write_batch", "top"):
        v = getattr(args, name)
        if v is not None and v < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.write_rate < 0:
        print("error: --write-rate must not be negative (0: no cap)", file=sys.stderr)
        return 2

    from pipeline.predict.writer import WriteOptions

    write = WriteOptions(batch=args.write_batch, rate=args.write_rate)
    cfg, pipeline = runner.load(args.project)  # the backend's process-wide Pipeline (lazy providers)
    try:
        project_id = args.ls_project or batch.find_project_id(client, cfg.project_name)
        print(f"Label Studio project {project_id} at {url}: " + (
            "--only-missing (default): tasks that already have a prediction with the current model_version "
            "are skipped (--no-only-missing predicts them again)" if args.only_missing else
            "--no-only-missing: every task is predicted, also those that already have this model_version's "
            "prediction (they get a second one)"), file=sys.stderr)
        if args.ray is not None and not args.dry_run:
            from pipeline.predict import ray_job
            rc = ray_job.main(args, client, cfg, project_id, url, api_key, write)
            if rc == 0 and args.order == "uncertain":
                print("\n".join(review_lines(review_first(client, url, project_id, args.top))))
            return rc
        if not args.dry_run:
            pipeline.load()  # models load now, not inside the first task's timing
        summary = batch.run(client, cfg, pipeline, project_id, only_missing=args.only_missing, limit=args.limit,
                            batch_size=args.batch_size, dry_run=args.dry_run, progress=not args.quiet,
                            fetch=runner.fetcher(cfg, url, api_key), concurrency=args.concurrency, write=write)
    except batch.JobError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    found = review_first(client, url, project_id, args.top) if args.order == "uncertain" and not summary.interrupted \
        else None
    if args.json:
        print(json.dumps({**summary.to_dict(), **({"most_uncertain": found} if found else {})}, indent=1, default=str))
    else:
        print("\n".join(summary.lines() + (review_lines(found) if found else [])))
    return 130 if summary.interrupted else 0
