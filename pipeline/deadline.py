"""One request's time budget, shared by everything the request calls.

Label Studio waits 100 s for ``/predict`` and then shows a bare timeout. So the backend gives each
request a total deadline below that (``PREDICT_DEADLINE``, see ``pipeline.predict.runner``) and
every blocking step of the request asks how much of it is left: image downloads, the wait for a
model slot, each VLM call and its retries. When it runs out, the step raises ``DeadlineExceeded``
whose message names the budget, so the task's error says why instead of Label Studio timing out.

The deadline is a context variable: ``within(seconds)`` sets it for the calling thread; a thread
pool that works for the request must run its jobs in a copy of the caller's context
(``propagate``). Code outside any ``within`` block has no deadline (``remaining()`` is None).

Only the clock lives here; what to do when it runs out is the caller's business."""
from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The request's time budget ran out; the message says what was cut short and the budget."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() when it runs out
    seconds: float  # the whole budget
    name: str  # what set it, for messages ("PREDICT_DEADLINE")

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def describe(self) -> str:
        return f"the request's {self.seconds:g} s deadline ({self.name})"


_current: contextvars.ContextVar[Optional[Deadline]] = contextvars.ContextVar("lf_deadline", default=None)


@contextlib.contextmanager
def within(seconds: Optional[float], name: str) -> Iterator[Optional[Deadline]]:
    """Run the block under a deadline of ``seconds`` (None: no deadline). A deadline already in force
    that ends sooner is kept."""
    outer = _current.get()
    if seconds is None:
        yield outer
        return
    mine = Deadline(time.monotonic() + float(seconds), float(seconds), name)
    chosen = outer if outer is not None and outer.at <= mine.at else mine
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def current() -> Optional[Deadline]:
    return _current.get()


def remaining() -> Optional[float]:
    """Seconds left (may be <= 0), or None without a deadline."""
    d = _current.get()
    return None if d is None else d.remaining()


def expired() -> bool:
    d = _current.get()
    return d is not None and d.remaining() <= 0


def clamp(timeout: float, doing: str) -> float:
    """``timeout`` cut to what is left of the deadline; raises DeadlineExceeded when nothing is left."""
    d = _current.get()
    if d is None:
        return timeout
    left = d.remaining()
    if left <= 0:
        raise DeadlineExceeded(f"{d.describe()} ran out before {doing}")
    return min(timeout, left)


def propagate(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to a copy of the caller's context: hand it to a thread pool so its jobs share
    the caller's deadline (each call gets its own copy, so jobs may run concurrently)."""
    ctx = contextvars.copy_context()

    def run(*args, **kwargs):
        return ctx.copy().run(fn, *args, **kwargs)
    return run
