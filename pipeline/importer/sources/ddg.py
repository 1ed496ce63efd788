"""DuckDuckGo image search through the ``ddgs`` package (``DDGS().images``).

ddgs (9.x) cannot be pointed at another host by configuration: the engine URLs
(``https://duckduckgo.com`` for the vqd token, ``https://duckduckgo.com/i.js`` for results) are
class constants, and the only knobs are ``proxy`` (also env ``DDGS_PROXY``), ``timeout`` and
``verify``. So this source wraps it at the result boundary: ``search_fn(query, max_results=N,
page=P)`` (the keywords of ``DDGS().images``) returns ddgs-shaped dicts (``title``, ``image`` =
file URL, ``thumbnail``, ``url`` = page URL, ``height``, ``width``, ``source``) and may raise ddgs
exceptions; the default ``search_fn`` calls ``DDGS(...).images(...)`` and tests inject a replay
function.

Paging: ddgs asks each engine for one page per call (DuckDuckGo's ``i.js`` gives ~100 images a
page, ``page=P`` sends offset ``s=(P-1)*100``), and ``max_results`` only truncates that page. So
the source asks for page 1, 2, ... until it has ``--max-per-query`` images, a page brings no new
image, or ``max_pages`` is reached.

Rate limiting: ddgs raises ``RatelimitException`` (older releases, on HTTP 403/429) — newer
releases swallow the engine's status and end with ``DDGSException("No results found.")``.
Both are handled: a rate limit is retried with exponential backoff (:mod:`pipeline.retry`) and
then the source gives up (its remaining queries are skipped, the other sources go on; the pages
already fetched for the query are kept); ``empty_limit`` consecutive "no results" answers to a
query's first page are also treated as a rate limit, since that is how a blocked ddgs looks (past
page 1, "no results" is the end of the results).
DDG gives no license information: ``license`` is left empty ("unknown").
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from pipeline.importer.records import Candidate
from pipeline.importer.sources.base import Source, SourceError, SourceGaveUp
from pipeline.retry import RetryPolicy, Transient
from pipeline.settings import Importer

SearchFn = Callable[..., list]   # search_fn(query, *, max_results, page) -> list of ddgs image dicts
MAX_PAGES = 10                   # ~1,000 images per query


def _ddgs_exceptions():
    try:
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
    except ImportError:  # pragma: no cover - ddgs is a dependency
        class DDGSException(Exception):
            pass

        class RatelimitException(DDGSException):
            pass

        class TimeoutException(DDGSException):
            pass
    return DDGSException, RatelimitException, TimeoutException


def default_search_fn(backend: Optional[str] = None, proxy: Optional[str] = None,
                      timeout: int = 10, safesearch: str = "moderate", region: str = "us-en") -> SearchFn:
    env = Importer.read()
    backend = backend or env.ddgs_backend
    proxy = proxy or env.ddgs_proxy.get_secret_value() or None   # ddgs itself also reads DDGS_PROXY

    def search(query: str, *, max_results: int, page: int = 1) -> list:
        from ddgs import DDGS
        return DDGS(proxy=proxy, timeout=timeout).images(
            query, max_results=max_results, page=page, backend=backend, safesearch=safesearch, region=region)
    return search


def _looks_rate_limited(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("403", "429", "ratelimit", "rate limit", "too many requests"))


class DDGSource(Source):
    name = "ddg"

    def __init__(self, search_fn: Optional[SearchFn] = None, backoff: float = 5.0, attempts: int = 3,
                 empty_limit: int = 3, sleep: Callable[[float], None] = time.sleep, max_pages: int = MAX_PAGES):
        super().__init__()
        self.search_fn = search_fn or default_search_fn()
        # tries per page while rate-limited, then the whole source gives up; waits backoff, 2*backoff, ...
        self.retry = RetryPolicy(attempts=attempts, backoff=backoff, max_wait=backoff * 2 ** max(0, attempts),
                                 jitter=0)
        self.empty_limit = empty_limit  # consecutive "No results found." treated as a block (0 = never)
        self.sleep = sleep
        self.max_pages = max(1, max_pages)
        self._empty_streak = 0
        self.waits: list[float] = []    # backoff waits taken (for the summary / tests)

    def describe(self) -> str:
        return f"{self.name} (ddgs)"

    def _fetch(self, query: str, page: int, limit: int) -> Optional[list]:
        """One page of ddgs rows; None for ddgs' "No results found."; rate limits raise Transient."""
        DDGSException, RatelimitException, TimeoutException = _ddgs_exceptions()
        try:
            return self.search_fn(query, max_results=limit, page=page) or []
        except RatelimitException as e:
            raise Transient(str(e)) from e
        except TimeoutException as e:
            raise SourceError(f"timeout: {e}") from e
        except DDGSException as e:
            if _looks_rate_limited(e):
                raise Transient(str(e)) from e
            if "no results" in str(e).lower():
                return None
            raise SourceError(f"{type(e).__name__}: {e}") from e

    def _page(self, query: str, page: int, limit: int) -> Optional[list]:
        waits: list[float] = []

        def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
            waits.append(wait)
            self.waits.append(wait)

        try:
            return self.retry.call(self._fetch, query, page, limit, on_retry=on_retry, sleep=self.sleep)
        except Transient as e:
            raise SourceGaveUp(f"rate-limited (HTTP 403/429: {e}); backed off {len(waits)}x "
                               f"({', '.join(f'{w:g}s' for w in waits)}) then gave up") from e

    def pages(self, query: str, bucket: str, limit: int):
        seen: set[str] = set()
        for page in range(1, self.max_pages + 1):
            rows = self._page(query, page, limit)
            if page == 1:
                if rows is None:
                    self._empty_streak += 1
                    if self.empty_limit and self._empty_streak >= self.empty_limit:
                        raise SourceGaveUp(
                            f"no results for {self._empty_streak} consecutive queries — ddgs hides the "
                            "engines' HTTP status, so this is most likely a DuckDuckGo rate limit (403/429)")
                    return
                self._empty_streak = 0
            found = (self._candidate(row, query, bucket) for row in rows or [])
            new = [c for c in found if c and c.image_url not in seen]
            if not new:
                return   # the end of the results (or an engine that ignores the page)
            seen.update(c.image_url for c in new)
            yield new
        self.note(f"{query!r}: stopped after {self.max_pages} DuckDuckGo pages")

    def _candidate(self, row: dict, query: str, bucket: str) -> Optional[Candidate]:
        img = (row.get("image") or "").strip()
        if not img.startswith(("http://", "https://")):
            return None
        return Candidate(source=self.name, bucket=bucket, query=query, image_url=img,
                         page_url=row.get("url") or "", license="", attribution="", title=row.get("title") or "")
