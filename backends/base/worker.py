"""What one server process knows about itself: which /predict requests it admits, its model slots,
and whether its models are still loading.

Two bounds, for two different things:

* Threads. gunicorn's gthread worker runs every request on one of THREADS threads, for as long as
  the request lasts, downloads and waits included. If /predict may take them all, /health and
  /setup wait behind predictions and Label Studio (1 s health timeout, 3 s setup timeout) shows
  the backend as disconnected exactly when it works hardest. So at most ``predict_limit``
  /predict are in the process at once (default THREADS - 2, keeping two threads for /health,
  /setup, /webhook and /metrics); the next one is answered 503 with Retry-After at once, as it
  has no thread to wait in.
* Model slots. At most PREDICT_CONCURRENCY model computations run at once per process
  (``ModelSlots``); everything else of a request (reading the body, downloading images) runs
  outside them. A /predict is admitted when it gets its first slot: it may wait PREDICT_SLOT_WAIT
  seconds for it, in first-come first-served order, then it is answered 503 with Retry-After.
  Waiters of a request already admitted (its further tasks) go before new requests, and wait as
  long as the caller's timeout allows (the request's deadline).

A model class says whether its ``predict`` takes slots itself around its model compute
(``TAKES_MODEL_SLOTS``, via ``model_slot``); otherwise the app runs the whole ``predict`` in one
slot. Nothing here knows about Flask routes; ``api.py`` uses it."""
from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import os
import threading
import time
from typing import Iterator, Optional

from backends.base import settings

log = logging.getLogger(__name__)

RESERVED_THREADS = 2  # kept free of /predict for /health, /setup, /webhook, /metrics
RETRY_AFTER_SECONDS = 5


class Busy(Exception):
    """This worker cannot take the /predict now (answered 503 with Retry-After)."""

    def __init__(self, reason: str):
        super().__init__(f"this backend worker is busy: {reason}; retry after {RETRY_AFTER_SECONDS} s")
        self.retry_after = RETRY_AFTER_SECONDS


class SlotTimeout(TimeoutError):
    """No model slot came free within the caller's timeout."""


def predict_limit_for(threads: Optional[int]) -> Optional[int]:
    """PREDICT_MAX_REQUESTS if set, else THREADS - RESERVED_THREADS (at least 1), else no limit."""
    limit = settings.current().predict_max_requests
    if limit is not None:
        return limit
    return None if threads is None else max(1, threads - RESERVED_THREADS)


def slot_count() -> int:
    """PREDICT_CONCURRENCY: model computations run at once per process (default 4)."""
    return settings.current().predict_concurrency


def slot_wait() -> float:
    """PREDICT_SLOT_WAIT: seconds a /predict may wait for its first model slot (default 5; 0: none)."""
    return settings.current().predict_slot_wait


class Admission:
    """One /predict's claim on the model slots: admitted once it got a slot; until then its waits
    end ``wait`` seconds after the first one began."""

    def __init__(self, wait: float):
        self.wait = wait
        self.admitted = False
        self.refused: Optional[Busy] = None
        self._until: Optional[float] = None
        self._lock = threading.Lock()

    def wait_left(self) -> float:
        with self._lock:
            if self._until is None:
                self._until = time.monotonic() + self.wait
            return self._until - time.monotonic()


_admission: contextvars.ContextVar[Optional[Admission]] = contextvars.ContextVar("lf_admission", default=None)


class ModelSlots:
    """``size`` slots handed out first come, first served (a slot that comes free goes to the
    longest waiter, never to a newcomer), waiters of admitted requests first."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._free = size
        self._admitted: collections.deque[threading.Event] = collections.deque()
        self._new: collections.deque[threading.Event] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._admitted) + len(self._new)

    def _acquire(self, timeout: Optional[float]) -> None:
        admission = _admission.get()
        if admission is not None and admission.refused is not None:
            raise admission.refused  # another task of the request already waited in vain
        with self._lock:
            if self._free and not self.waiting:
                self._free -= 1
                self._admit(admission)
                return
            turn = threading.Event()
            queue = self._admitted if admission is None or admission.admitted else self._new
            queue.append(turn)
        t0 = time.monotonic()
        while True:
            admitting = admission is not None and not admission.admitted
            bounds = [b for b in (None if timeout is None else t0 + timeout - time.monotonic(),
                                  admission.wait_left() if admitting else None) if b is not None]
            turn.wait(max(min(bounds), 0.0) if bounds else None)
            with self._lock:
                if turn.is_set():  # handed a slot (maybe just as the wait ended)
                    self._admit(admission)
                    return
                if admitting and admission.admitted:  # another task of the request got in meanwhile:
                    queue.remove(turn)  # wait on among the admitted, up to ``timeout``
                    queue = self._admitted
                    queue.append(turn)
                    continue
                if timeout is not None and time.monotonic() - t0 >= timeout:
                    queue.remove(turn)
                    raise SlotTimeout(f"no model slot came free within {timeout:g} s")
                if admitting and admission.wait_left() <= 0:
                    queue.remove(turn)
                    admission.refused = Busy(f"no model slot came free within {admission.wait:g} s "
                                             f"(PREDICT_SLOT_WAIT; {self.size} slots, {self.waiting} more "
                                             f"waiting)")
                    raise admission.refused

    @staticmethod
    def _admit(admission: Optional[Admission]) -> None:
        if admission is not None:
            admission.admitted = True

    def _release(self) -> None:
        with self._lock:
            for queue in (self._admitted, self._new):
                if queue:
                    queue.popleft().set()  # the slot goes straight to the longest waiter
                    return
            self._free += 1

    @contextlib.contextmanager
    def hold(self, timeout: Optional[float] = None) -> Iterator[None]:
        """One slot for the block. Raises ``Busy`` when the /predict this runs for is not admitted yet
        and its slot wait runs out, ``SlotTimeout`` when ``timeout`` seconds (None: no limit) pass."""
        self._acquire(timeout)
        try:
            yield
        finally:
            self._release()

    def metrics(self) -> dict:
        with self._lock:
            return {"slots": self.size, "slots_busy": self.size - self._free, "slots_waiting": self.waiting}


_slots: dict[int, ModelSlots] = {}
_slots_lock = threading.Lock()


def model_slots(size: Optional[int] = None) -> ModelSlots:
    """This process's slots of ``size`` (default PREDICT_CONCURRENCY): requests and jobs asking for
    the same size share them."""
    size = size or slot_count()
    with _slots_lock:
        slots = _slots.get(size)
        if slots is None:
            slots = _slots[size] = ModelSlots(size)
        return slots


def _forget_slots() -> None:  # a forked child holds none of its parent's slots
    global _slots_lock
    _slots.clear()
    _slots_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_slots)


def model_slot(timeout: Optional[float] = None) -> contextlib.AbstractContextManager:
    """One of this process's PREDICT_CONCURRENCY model slots for the block (see ``ModelSlots.hold``)."""
    return model_slots().hold(timeout)


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
    def admit(self) -> Iterator[Admission]:
        """Count a /predict for the block (``Busy`` at once beyond ``predict_limit``), its first model
        slot waited for at most PREDICT_SLOT_WAIT seconds."""
        with self._lock:
            if self.predict_limit is not None and self.in_flight >= self.predict_limit:
                self.refused += 1
                raise Busy(f"{self.in_flight} /predict requests in progress (limit {self.predict_limit})")
            self.in_flight += 1
        admission = Admission(slot_wait())
        token = _admission.set(admission)
        try:
            yield admission
        except Busy:
            with self._lock:
                self.refused += 1
            raise
        finally:
            _admission.reset(token)
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
        predict.update(model_slots().metrics(), slot_wait=slot_wait())
        return {"pid": os.getpid(), "loading": self.loading, "warm_up_seconds": self.warm_up_seconds,
                "warm_up_error": self.warm_up_error, "predict": predict}
