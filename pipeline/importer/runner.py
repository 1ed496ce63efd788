"""The import run: gather → download + dedupe + store (manifest) → Label Studio → summary."""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from pipeline.atomic import save_atomic
from pipeline.config import ProjectConfig
from pipeline.importer.dedupe import DEFAULT_PHASH_DISTANCE
from pipeline.importer.download import DEFAULT_MAX_BYTES, Downloader, Fetched
from pipeline.importer.gather import gather
from pipeline.importer.http import HostRateLimiter, Http, make_session
from pipeline.importer.manifest import Manifest
from pipeline.importer.records import Candidate, Summary
from pipeline.importer.sources import ALL, build_sources
from pipeline.importer.sources.ddg import SearchFn
from pipeline.labelstudio import client as credentials
from pipeline.retry import RetryPolicy
from pipeline.settings import LabelStudio

log = logging.getLogger(__name__)


@dataclass
class ImportOptions:
    sources: list[str] = field(default_factory=lambda: list(ALL))
    max_per_query: int = 20
    dry_run: bool = False
    data_root: Optional[str] = None            # default: the YAML's data_root (relative to the cwd; ~ expanded)
    label_studio_url: Optional[str] = None     # default: LABEL_STUDIO_URL; none → no Label Studio step
    api_key: Optional[str] = None              # default: LABEL_STUDIO_API_KEY
    storage: str = "upload"                    # or "local-files"
    local_files_root: Optional[str] = None     # default: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    connect_backend: Optional[str] = None
    concurrency: int = 8                       # parallel downloads
    per_host_interval: float = 0.25            # seconds between request starts to one host
    retries: int = 4                           # tries per request on 429/5xx/connection errors
    backoff: float = 1.0                       # first retry wait (doubles)
    max_wait: float = 30.0                     # cap on one wait (also on Retry-After)
    timeout: float = 30.0
    max_bytes: int = DEFAULT_MAX_BYTES
    min_side: int = 32
    phash_distance: int = DEFAULT_PHASH_DISTANCE
    progress: bool = True
    ddg_search: Optional[SearchFn] = None      # replaces the ddgs call (tests, or another ddgs setup)
    ddg_backoff: float = 5.0
    ddg_attempts: int = 3
    ls_client: object = None                   # a ready label_studio_sdk.LabelStudio (else url + key)
    masks: Optional[str] = None                # "brush" / "polygon": a mask labeling config for a new project
    videos: list[str] = field(default_factory=list)  # folders, files or http(s) URLs of videos: their frames
    frame_stride: int = 30                     # frames between two picks within a scene
    frames_per_video: int = 50                 # at most this many frames of one video


def _entry(f: Fetched, path: str, size: int) -> dict:
    c = f.candidate
    return {"id": f.sha256[:16], "path": path, "bucket": c.bucket, "source": c.source, "query": c.query,
            "image_url": c.image_url, "page_url": c.page_url, "license": c.license,
            "attribution": c.attribution, "title": c.title, "sha256": f.sha256, "phash": f.phash,
            "width": f.image.size[0], "height": f.image.size[1], "bytes": size}


def _alias(c: Candidate, kind: str, distance: int = 0) -> dict:
    return {"source": c.source, "bucket": c.bucket, "query": c.query, "image_url": c.image_url,
            "page_url": c.page_url, "license": c.license, "attribution": c.attribution,
            "kind": kind, "distance": distance}


def _ordered(executor, fn, items, window: int):
    """executor.map with a bounded number of items in flight, results in input order."""
    pending = deque()
    it = iter(items)
    for item in it:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        yield pending.popleft().result()
        for item in it:
            pending.append(executor.submit(fn, item))
            break


def download_all(cands: list[Candidate], manifest: Manifest, opts: ImportOptions, http: Http,
                 summary: Summary) -> list[dict]:
    downloader = Downloader(http, max_bytes=opts.max_bytes, min_side=opts.min_side)
    index = manifest.dedupe_index(opts.phash_distance)
    todo, first_by_url = [], {}
    for c in cands:
        known = manifest.knows_url(c.image_url)
        if known:
            summary.known += 1
            continue
        if c.image_url in first_by_url:
            summary.duplicates["same URL"] += 1
            first_by_url[c.image_url].append(c)
            continue
        first_by_url[c.image_url] = []
        todo.append(c)
    new_entries: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, opts.concurrency), thread_name_prefix="lf-download") as ex, \
            tqdm(total=len(todo), desc="download       ", unit="img", disable=not opts.progress,
                 dynamic_ncols=True) as bar:
        for f in _ordered(ex, downloader.fetch, todo, window=max(1, opts.concurrency) * 2):
            c = f.candidate
            bar.update(1)
            if not f.ok:
                summary.rejected[f.reason] += 1
                log.info("rejected %s: %s (%s)", c.image_url, f.reason, f.detail)
                continue
            dup = index.find(f.sha256, f.phash)
            if dup:
                kind, key, dist = dup
                summary.duplicates["identical bytes (sha256)" if kind == "sha256"
                                   else "perceptual (pHash)"] += 1
                manifest.add_alias(key, _alias(c, kind, dist))
                for same in first_by_url.get(c.image_url, []):
                    manifest.add_alias(key, _alias(same, "same URL"))
                continue
            data, ext = f.encoded()
            rel = Path(c.bucket) / f"{f.sha256[:16]}{ext}"
            dest = manifest.data_root / rel
            save_atomic(dest, lambda out, data=data: out.write(data))
            entry = manifest.add(_entry(f, rel.as_posix(), len(data)))
            for same in first_by_url.get(c.image_url, []):
                if (same.bucket, same.query, same.source) != (c.bucket, c.query, c.source):
                    entry["aliases"].append(_alias(same, "same URL"))
            index.add(entry["id"], f.sha256, f.phash)
            new_entries.append(entry)
            summary.downloaded += 1
            summary.per_bucket[c.bucket] += 1
            bar.set_postfix(new=summary.downloaded)
    return new_entries


def run_import(cfg: ProjectConfig, opts: Optional[ImportOptions] = None) -> Summary:
    opts = opts or ImportOptions()
    summary = Summary(dry_run=opts.dry_run)
    data_root = Path(opts.data_root or cfg.data_root).expanduser()
    manifest = Manifest.load(data_root)
    http = Http(make_session(pool=max(16, opts.concurrency * 2)), HostRateLimiter(opts.per_host_interval),
                RetryPolicy(attempts=opts.retries, backoff=opts.backoff, max_wait=opts.max_wait),
                timeout=opts.timeout)
    if opts.videos:  # frames of videos instead of a web search
        from pipeline.importer.videos import import_videos
        if opts.dry_run:
            summary.label_studio = "skipped (dry run)"
            return summary
        import_videos(opts.videos, manifest, http, summary, stride=opts.frame_stride,
                      per_video=opts.frames_per_video, phash_distance=opts.phash_distance)
        manifest.save()
        return _to_label_studio(cfg, opts, manifest, summary)
    sources = build_sources(opts.sources, http, ddg_search=opts.ddg_search, ddg_backoff=opts.ddg_backoff,
                            ddg_attempts=opts.ddg_attempts, max_bytes=opts.max_bytes)
    if not cfg.buckets:
        summary.warnings.append("the project YAML has no buckets: nothing to search for")

    cands, statuses = gather(cfg, sources, opts.max_per_query, opts.progress)
    summary.sources = statuses
    summary.found = len(cands)
    for st in statuses.values():
        if st.gave_up:
            summary.warnings.append(f"source {st.name} gave up: {st.gave_up}; the other sources went on")
        for err in st.errors[:5]:
            summary.warnings.append(f"{st.name}: {err}")

    if opts.dry_run:
        seen = set()
        for c in cands:
            if manifest.knows_url(c.image_url):
                summary.known += 1
            elif c.image_url in seen:
                summary.duplicates["same URL"] += 1
            else:
                summary.per_bucket[c.bucket] += 1   # new URLs (would be downloaded)
            seen.add(c.image_url)
        summary.label_studio = "skipped (dry run)"
        return summary

    download_all(cands, manifest, opts, http, summary)
    manifest.save()
    return _to_label_studio(cfg, opts, manifest, summary)


def _to_label_studio(cfg: ProjectConfig, opts: ImportOptions, manifest: Manifest, summary: Summary) -> Summary:
    url = opts.label_studio_url or credentials.label_studio_url()
    if not (url or opts.ls_client):
        summary.label_studio = "skipped (no --label-studio-url / LABEL_STUDIO_URL)"
        if opts.connect_backend:
            summary.warnings.append("--connect-backend needs Label Studio; not done")
        return summary

    from pipeline.importer.ls_project import LabelStudioTarget
    target = LabelStudioTarget(url, opts.api_key, client=opts.ls_client, timeout=max(opts.timeout, 60))
    root = opts.local_files_root or LabelStudio.read().local_files_document_root
    with tqdm(total=len(manifest), desc="label studio   ", unit="img", disable=not opts.progress,
              dynamic_ncols=True) as bar:
        res = target.sync(cfg, manifest, storage=opts.storage, masks=opts.masks,
                          document_root=Path(root) if root else None, on_progress=bar.update)
    manifest.save()
    summary.imported = res["imported"]
    summary.already_imported = res["already"]
    summary.label_studio = f"{res['note']} at {target.url}; {res['imported']} tasks imported"
    if res["missing"]:
        summary.warnings.append(f"{res['missing']} manifest images are missing on disk and were not imported")
    if opts.connect_backend:
        try:
            summary.backend = target.connect_backend(res["project"], opts.connect_backend)
        except Exception as e:  # noqa: BLE001 - report it; the import itself succeeded
            summary.backend = f"FAILED to connect {opts.connect_backend}: {str(e)[:300]}"
            summary.warnings.append(summary.backend)
    return summary
