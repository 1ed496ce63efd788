"""What one server process knows about itself: how many /predict requests it admits at once,
and whether its models are still loading.

gunicorn's gthread worker runs every request on one of THREADS threads. If /predict may take
them all, /health and /setup wait behind predictions for minutes and Label Studio (1 s health
timeout, 3 s setup timeout) shows the backend as disconnected exactly when it works hardest. So
a worker admits at most ``predict_limit`` predictions at once (default: THREADS - 2, keeping two
threads for /health, /setup, /webhook and /metrics) and answers the next ones 503 with
Retry-After at once. Predictions admitted beyond the model's own concurrency wait inside it:
that is the bounded queue. Nothing here knows about Flask routes; ``api.py`` uses it."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Iterator, Optional

log = logging.getLogger(__name__)

RESERVED_THREADS = 2  # kept free of /predict for /health, /setup, /webhook, /metrics
RETRY_AFTER_SECONDS = 5


class Busy(Exception):
    """No /predict slot free on this worker."""

    def __init__(self, in_flight: int, limit: int):
        super().__init__(f"this backend worker is busy: {in_flight} /predict requests in progress (limit {limit}); "
                         f"retry after {RETRY_AFTER_SECONDS} s")
        self.retry_after = RETRY_AFTER_SECONDS


def predict_limit_for(threads: Optional[int]) -> Optional[int]:
    """PREDICT_MAX_REQUESTS if set, else THREADS - RESERVED_THREADS (at least 1), else no limit."""
    env = os.getenv("PREDICT_MAX_REQUESTS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("PREDICT_MAX_REQUESTS=%r is not a number: ignored", env)
    return None if threads is None else max(1, threads - RESERVED_THREADS)


class Worker:
    """Per-process state of one app: /predict admission, counters and the warm-up."""

    def __init__(self, predict_limit: Optional[int] = None):
        self.predict_limit = predict_limit
        self._lock = threading.Lock()
        self.in_flight = 0
        self.served = 0
        self.refused = 0
        self._warm_up: Optional[threading.Thread] = None
        self.warm_up_seconds: Optional[float] = None
        self.warm_up_error: Optional[str] = None

    @contextlib.contextmanager
    def predict_slot(self) -> Iterator[None]:
        """Hold one of ``predict_limit`` slots for the block, or raise ``Busy`` at once."""
        with self._lock:
            if self.predict_limit is not None and self.in_flight >= self.predict_limit:
                self.refused += 1
                raise Busy(self.in_flight, self.predict_limit)
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
                self.served += 1

    def start_warm_up(self, model_class) -> None:
        """Run ``model_class.warm_up()`` in a thread; ``loading`` is true until it returns."""
        if self._warm_up is not None:
            return

        def run():
            t0 = time.perf_counter()
            try:
                model_class.warm_up()
            except Exception as e:  # noqa: BLE001 - the first predict loads (and reports) again
                self.warm_up_error = f"{type(e).__name__}: {e}"
                log.warning("warm-up of %s failed: %s", model_class.__name__, self.warm_up_error)
            self.warm_up_seconds = round(time.perf_counter() - t0, 3)
            log.info("warm-up of %s done in %.1f s", model_class.__name__, self.warm_up_seconds)

        self._warm_up = threading.Thread(target=run, name="warm-up", daemon=True)
        self._warm_up.start()

    @property
    def loading(self) -> bool:
        return self._warm_up is not None and self._warm_up.is_alive()

    def metrics(self) -> dict:
        with self._lock:
            predict = {"in_flight": self.in_flight, "limit": self.predict_limit, "served": self.served,
                       "refused_busy": self.refused}
        return {"pid": os.getpid(), "loading": self.loading, "warm_up_seconds": self.warm_up_seconds,
                "warm_up_error": self.warm_up_error, "predict": predict}
