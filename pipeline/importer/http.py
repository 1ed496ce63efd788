"""HTTP plumbing shared by the sources and the downloader: one requests session with a
descriptive User-Agent, a per-host rate limit, and the retry policy of :mod:`pipeline.retry`
(429/5xx answers and connection failures are retried with backoff, ``Retry-After`` honoured)."""
from __future__ import annotations

import threading
import time
from typing import Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from pipeline.retry import RetryPolicy, Transient, transient_status
from pipeline.settings import Importer


def make_session(pool: int = 16) -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = Importer.read().user_agent  # LF_USER_AGENT
    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


class HostRateLimiter:
    """At most one request start per ``min_interval`` seconds per host (thread-safe)."""

    def __init__(self, min_interval: float = 0.25):
        self.min_interval = max(0.0, float(min_interval))
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, url: str) -> None:
        if self.min_interval <= 0:
            return
        host = urlsplit(url).netloc.lower()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, 0.0))
            self._next[host] = slot + self.min_interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)


class Http:
    """GET with per-host rate limit and retries (``retry``: a :class:`pipeline.retry.RetryPolicy`)."""

    def __init__(self, session: Optional[requests.Session] = None, limiter: Optional[HostRateLimiter] = None,
                 retry: Optional[RetryPolicy] = None, timeout: float = 30.0):
        self.session = session or make_session()
        self.limiter = limiter or HostRateLimiter()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    def _get_once(self, url: str, **kw) -> requests.Response:
        self.limiter.wait(url)
        try:
            resp = self.session.get(url, timeout=self.timeout, **kw)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise Transient(f"{type(e).__name__}: {url}") from e
        return transient_status(resp, url)

    def get(self, url: str, *, params=None, stream: bool = False, headers=None) -> requests.Response:
        """Return the response (status checked by the caller unless it is 429/5xx, which are
        retried and finally raised as :class:`pipeline.retry.Transient`)."""
        return self.retry.call(self._get_once, url, params=params, stream=stream, headers=headers)

    def get_json(self, url: str, params=None) -> dict:
        resp = self.get(url, params=params, headers={"Accept": "application/json"})
        if resp.status_code >= 400:
            raise requests.HTTPError(f"HTTP {resp.status_code} for {resp.url}", response=resp)
        return resp.json()
