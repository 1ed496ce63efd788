"""Ask every source for every (bucket, query); sources run side by side (one thread and one
progress bar each) so a source that backs off or gives up does not hold the others."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from pipeline.config import ProjectConfig
from pipeline.importer.records import Candidate, SourceStatus
from pipeline.importer.sources.base import Source, SourceError, SourceGaveUp

log = logging.getLogger(__name__)


def jobs(cfg: ProjectConfig) -> list[tuple[str, str]]:
    return [(bucket, q) for bucket, queries in cfg.buckets.items() for q in queries]


MAX_CONSECUTIVE_FAILURES = 5   # then the source is treated as unreachable / broken and abandoned


def _run_source(src: Source, work: list[tuple[str, str]], limit: int, position: int, progress: bool,
                max_failures: int = MAX_CONSECUTIVE_FAILURES):
    status = SourceStatus(src.name)
    found: list[Candidate] = []
    streak = 0
    with tqdm(total=len(work), desc=f"search {src.name:<9}", unit="query", position=position,
              leave=True, disable=not progress, dynamic_ncols=True) as bar:
        for i, (bucket, query) in enumerate(work):
            try:
                hits = src.search(query, bucket, limit)
            except SourceGaveUp as e:
                status.gave_up = str(e)
                status.skipped_queries = len(work) - i
                status.found += len(e.partial)
                found.extend(e.partial)
                log.info("%s: %s / %r: gave up (%d kept from earlier pages): %s", src.name, bucket, query,
                         len(e.partial), e)
                bar.set_postfix_str("gave up")
                break
            except Exception as e:  # noqa: BLE001 - SourceError, or a surprise in one source: the others go on
                msg = str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
                log.info("%s: %s / %r failed: %s", src.name, bucket, query, msg)
                status.failed_queries += 1
                status.errors.append(f"{bucket} / {query!r}: {msg}")
                bar.update(1)
                streak += 1
                if max_failures and streak >= max_failures and i + 1 < len(work):
                    status.gave_up = f"{streak} queries in a row failed (last: {msg[:200]})"
                    status.skipped_queries = len(work) - i - 1
                    bar.set_postfix_str("gave up")
                    break
                continue
            finally:
                status.notes += src.notes
                src.notes.clear()
            log.info("%s: %s / %r: %d candidates", src.name, bucket, query, len(hits))
            streak = 0
            status.queries += 1
            status.found += len(hits)
            found.extend(hits)
            bar.update(1)
            bar.set_postfix(found=status.found)
    return status, found


def gather(cfg: ProjectConfig, sources: list[Source], limit: int, progress: bool = True):
    """-> (candidates in bucket/query/source/rank order, {source name: SourceStatus})."""
    work = jobs(cfg)
    order_bq = {bq: i for i, bq in enumerate(work)}
    order_src = {s.name: i for i, s in enumerate(sources)}
    statuses, found = {}, []
    if not sources or not work:
        return [], {s.name: SourceStatus(s.name) for s in sources}
    with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="lf-source") as ex:
        futs = [ex.submit(_run_source, s, work, limit, i, progress) for i, s in enumerate(sources)]
        for f in futs:
            st, hits = f.result()
            statuses[st.name] = st
            found.extend(hits)
    found.sort(key=lambda c: (order_bq.get((c.bucket, c.query), 0), order_src.get(c.source, 0), c.rank))
    return found, statuses
