"""DuckDuckGo image search through the ``ddgs`` package (``DDGS().images``).

ddgs (9.x) cannot be pointed at another host by configuration: the engine URLs
(``https://duckduckgo.com`` for the vqd token, ``https://duckduckgo.com/i.js`` for results) are
class constants, and the only knobs are ``proxy`` (also env ``DDGS_PROXY``), ``timeout`` and
``verify``. So this source wraps it at the result boundary: ``search_fn(query, max_results)``
returns ddgs-shaped dicts (``title``, ``image`` = file URL, ``thumbnail``, ``url`` = page URL,
``height``, ``width``, ``source``) and may raise ddgs exceptions; the default ``search_fn`` calls
``DDGS(...).images(...)`` and tests inject a replay function.

Rate limiting: ddgs raises ``RatelimitException`` (older releases, on HTTP 403/429) — newer
releases swallow the engine's status and end with ``DDGSException("No results found.")``.
Both are handled: a rate limit is retried with exponential backoff and then the source gives up
(its remaining queries are skipped, the other sources go on); ``ddg_empty_limit`` consecutive
"no results" answers are also treated as a rate limit, since that is how a blocked ddgs looks.
DDG gives no license information: ``license`` is left empty ("unknown").
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from pipeline.importer.records import Candidate
from pipeline.importer.sources.base import Source, SourceError, SourceGaveUp

SearchFn = Callable[[str, int], list]


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
    backend = backend or os.environ.get("LF_DDGS_BACKEND", "duckduckgo")
    proxy = proxy or os.environ.get("LF_DDGS_PROXY") or None   # ddgs itself also reads DDGS_PROXY

    def search(query: str, max_results: int) -> list:
        from ddgs import DDGS
        return DDGS(proxy=proxy, timeout=timeout).images(
            query, max_results=max_results, backend=backend, safesearch=safesearch, region=region)
    return search


def _looks_rate_limited(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("403", "429", "ratelimit", "rate limit", "too many requests"))


class DDGSource(Source):
    name = "ddg"

    def __init__(self, search_fn: Optional[SearchFn] = None, backoff: float = 5.0, attempts: int = 3,
                 empty_limit: int = 3, sleep: Callable[[float], None] = time.sleep):
        self.search_fn = search_fn or default_search_fn()
        self.backoff = backoff          # first wait after a rate limit; doubles each attempt
        self.attempts = attempts        # tries per query before giving up on the whole source
        self.empty_limit = empty_limit  # consecutive "No results found." treated as a block (0 = never)
        self.sleep = sleep
        self._empty_streak = 0
        self.waits: list[float] = []    # backoff waits taken (for the summary / tests)

    def describe(self) -> str:
        return f"{self.name} (ddgs)"

    def search(self, query: str, bucket: str, limit: int) -> list[Candidate]:
        DDGSException, RatelimitException, TimeoutException = _ddgs_exceptions()
        last: Optional[Exception] = None
        for attempt in range(self.attempts):
            try:
                rows = self.search_fn(query, limit) or []
                break
            except RatelimitException as e:
                last = e
            except TimeoutException as e:
                raise SourceError(f"timeout: {e}") from e
            except DDGSException as e:
                if _looks_rate_limited(e):
                    last = e
                elif "no results" in str(e).lower():
                    self._empty_streak += 1
                    if self.empty_limit and self._empty_streak >= self.empty_limit:
                        raise SourceGaveUp(
                            f"no results for {self._empty_streak} consecutive queries — ddgs hides the "
                            "engines' HTTP status, so this is most likely a DuckDuckGo rate limit (403/429)"
                        ) from e
                    return []
                else:
                    raise SourceError(f"{type(e).__name__}: {e}") from e
            if attempt + 1 < self.attempts:
                wait = self.backoff * (2 ** attempt)
                self.waits.append(wait)
                self.sleep(wait)
        else:
            raise SourceGaveUp(f"rate-limited (HTTP 403/429: {last}); backed off "
                               f"{len(self.waits)}x ({', '.join(f'{w:g}s' for w in self.waits)}) then gave up")
        self._empty_streak = 0
        out: list[Candidate] = []
        for row in rows:
            img = (row.get("image") or "").strip()
            if not img.startswith(("http://", "https://")):
                continue
            out.append(Candidate(source=self.name, bucket=bucket, query=query, image_url=img,
                                 page_url=row.get("url") or "", license="", attribution="",
                                 title=row.get("title") or "", rank=len(out)))
            if len(out) >= limit:
                break
        return out
