"""HTTP plumbing shared by the sources and the downloader: one requests session with a
descriptive User-Agent, a per-host rate limit, and retries with backoff on 429/5xx."""
from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

USER_AGENT = os.environ.get(
    "LF_USER_AGENT",
    "label-factory-importer/0.1 (https://github.com/label-factory; dataset building for annotation)")
RETRY_STATUS = {429, 500, 502, 503, 504}


class RetryableHTTPError(Exception):
    """A 429/5xx answer (or a connection failure) that is worth retrying."""

    def __init__(self, status: Optional[int], url: str, retry_after: Optional[float] = None, detail: str = ""):
        self.status, self.url, self.retry_after = status, url, retry_after
        super().__init__(f"HTTP {status} for {url}" if status else f"{detail or 'connection failed'}: {url}")


def make_session(pool: int = 16) -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
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


def _retry_after(resp: requests.Response) -> Optional[float]:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


@dataclass
class RetryPolicy:
    attempts: int = 4           # total tries, including the first
    backoff: float = 1.0        # first wait (seconds); doubles each retry, with jitter
    max_wait: float = 30.0      # cap for one wait, also for a server's Retry-After

    def retrying(self) -> Retrying:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            ra = getattr(exc, "retry_after", None)
            if ra is not None:
                return min(ra, self.max_wait)
            delay = self.backoff * 2 ** (state.attempt_number - 1)
            return min(self.max_wait, delay + random.uniform(0, self.backoff / 2))
        return Retrying(stop=stop_after_attempt(max(1, self.attempts)), wait=wait, reraise=True,
                        retry=retry_if_exception_type(RetryableHTTPError))


class Http:
    """GET with per-host rate limit and retries; ``on_retry`` sees each retryable failure."""

    def __init__(self, session: Optional[requests.Session] = None, limiter: Optional[HostRateLimiter] = None,
                 retry: Optional[RetryPolicy] = None, timeout: float = 30.0):
        self.session = session or make_session()
        self.limiter = limiter or HostRateLimiter()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    def get(self, url: str, *, params=None, stream: bool = False, headers=None,
            ok: Callable[[requests.Response], bool] = lambda r: r.status_code < 400) -> requests.Response:
        """Return the response (status checked by the caller unless it is 429/5xx, which are
        retried and finally raised as RetryableHTTPError)."""
        for attempt in self.retry.retrying():
            with attempt:
                self.limiter.wait(url)
                try:
                    resp = self.session.get(url, params=params, stream=stream, headers=headers,
                                            timeout=self.timeout)
                except (requests.ConnectionError, requests.Timeout) as e:
                    raise RetryableHTTPError(None, url, detail=type(e).__name__) from e
                if resp.status_code in RETRY_STATUS:
                    ra = _retry_after(resp)
                    resp.close()
                    raise RetryableHTTPError(resp.status_code, url, ra)
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, url: str, params=None) -> dict:
        resp = self.get(url, params=params, headers={"Accept": "application/json"})
        if resp.status_code >= 400:
            raise requests.HTTPError(f"HTTP {resp.status_code} for {resp.url}", response=resp)
        return resp.json()
