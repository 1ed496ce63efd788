"""The one retry policy for outgoing calls (web APIs, image hosts, model servers), on tenacity.

A call site does two things:

1. turn a failure worth retrying into :class:`Transient` (``transient_status(resp)`` does it for
   an HTTP 429/5xx answer and reads its ``Retry-After``; connection errors and timeouts are the
   caller's to wrap, since only it knows what a safe message is);
2. run the call through ``RetryPolicy(...).call(fn, *args)``.

Waits: ``backoff * 2**(n-1)`` before retry n, plus up to ``jitter * backoff`` at random, never
less than the server's ``Retry-After`` and never more than ``max_wait``. ``attempts`` counts every
try (the first one too); ``deadline`` (seconds since the first try) also ends the retries: no wait
is started that would end past it. When the tries are used up the last :class:`Transient` is
raised as it is, so the caller words the final error.

This module does no I/O of its own and knows nothing of requests, sessions or rate limits.

Example (an OpenAI-compatible provider)::

    policy = RetryPolicy(attempts=retries + 1, backoff=0.5, max_wait=8.0, jitter=0)

    def post_once():
        try:
            resp = session.post(url, json=body, timeout=timeout)
        except requests.ConnectionError as e:
            raise Transient(f"cannot connect ({e.__class__.__name__})") from None
        transient_status(resp)          # raises Transient on 429/5xx
        return resp

    resp = policy.call(post_once, on_retry=lambda n, exc, wait: log.warning(
        "%s; retry %d/%d in %.1f s", exc, n, retries, wait))
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class Transient(Exception):
    """A failure worth retrying; ``str(exc)`` is safe to show (no tokens, no bodies with secrets).

    ``status`` is the HTTP status when there was an answer, ``retry_after`` the server's
    ``Retry-After`` in seconds when it sent one."""

    def __init__(self, message: str, *, status: Optional[int] = None, retry_after: Optional[float] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """A ``Retry-After`` header value in seconds; None when absent or in the HTTP-date form."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def transient_status(resp, what: str = "") -> Any:
    """Raise :class:`Transient` when ``resp`` (a requests-like response) is a 429/5xx answer,
    closing it first; return it otherwise. ``what`` names the request in the message
    (default: the response's URL)."""
    if resp.status_code in RETRY_STATUS:
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        resp.close()
        raise Transient(f"HTTP {resp.status_code} for {what or resp.url}", status=resp.status_code,
                        retry_after=retry_after)
    return resp


OnRetry = Callable[[int, BaseException, float], None]   # (attempt that failed, its error, seconds to wait)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4             # tries in all, the first included
    backoff: float = 1.0          # first wait (seconds); doubles at each retry
    max_wait: float = 30.0        # cap on one wait, a server's Retry-After included
    jitter: float = 0.5           # up to jitter * backoff seconds added at random (0: exact waits)
    deadline: Optional[float] = None   # no wait that would end later than this after the first try

    def wait(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        delay = self.backoff * 2 ** (attempt - 1)
        if self.jitter > 0:
            delay += random.uniform(0, self.jitter * self.backoff)
        return min(self.max_wait, max(delay, retry_after or 0.0))

    def retrying(self, *, retry_on: tuple[type[BaseException], ...] = (Transient,),
                 on_retry: Optional[OnRetry] = None, sleep: Callable[[float], None] = time.sleep) -> Retrying:
        """A tenacity ``Retrying`` with this policy (for ``for attempt in policy.retrying(): with attempt: ...``)."""
        stop = stop_after_attempt(max(1, self.attempts))
        if self.deadline is not None:
            stop = stop | stop_before_delay(self.deadline)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait(state.attempt_number, getattr(exc, "retry_after", None))

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None:
                on_retry(state.attempt_number, state.outcome.exception(),
                         state.next_action.sleep if state.next_action else 0.0)

        return Retrying(stop=stop, wait=wait, retry=retry_if_exception_type(retry_on), reraise=True,
                        before_sleep=before_sleep, sleep=sleep)

    def call(self, fn: Callable[..., Any], *args, retry_on: tuple[type[BaseException], ...] = (Transient,),
             on_retry: Optional[OnRetry] = None, sleep: Callable[[float], None] = time.sleep, **kwargs) -> Any:
        """``fn(*args, **kwargs)``, tried again on ``retry_on`` errors; the last error is re-raised."""
        return self.retrying(retry_on=retry_on, on_retry=on_retry, sleep=sleep)(fn, *args, **kwargs)
