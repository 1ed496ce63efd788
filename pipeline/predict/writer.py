"""The batch jobs' one way of storing predictions in Label Studio (``predict`` and ``predict --ray``).

``PredictionWriter`` takes finished task outcomes (``put``) and writes them from its own thread with Label
Studio's bulk endpoint (``POST /api/projects/{id}/import/predictions``): one request at a time, at most
``WriteOptions.batch`` predictions per request and ``WriteOptions.rate`` predictions per second, and no
prediction waits more than ``WriteOptions.flush_seconds``. ``close`` writes what was put and stops. It
counts every outcome into the job's ``batch.Summary`` (stored, boxes, empty, failed with a reason).

Nothing lost, nothing twice:

* A write whose answer is lost (timeout, connection reset, 408/429/5xx) may have landed: before trying
  again the writer asks Label Studio which of its tasks now carry one more prediction of this
  model_version than they had when listed (``put(outcome, existing=n)``) and sends only the others.
* A refused write (any other 4xx) or one that creates fewer than it was sent (Label Studio drops
  predictions its config check rejects) is written again one ``predictions.create`` per task not
  stored, so each refused task fails with Label Studio's own reason and the others land.
* Label Studio has no idempotency key: two writers on one project at once can both write a task.

It must not choose tasks, predict, or read the labeling config: the jobs do (pipeline/predict/job.py,
ray_job.py)."""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from pipeline.predict.runner import TaskOutcome
from pipeline.retry import RetryPolicy, Transient

if TYPE_CHECKING:
    from pipeline.predict.job import Summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteOptions:
    batch: int = 100  # predictions per bulk request
    rate: float = 100.0  # predictions/s at most (0: no cap); leaves Label Studio room for the annotators
    flush_seconds: float = 2.0  # a finished prediction waits at most this long to be written


def api_reason(e: Exception) -> str:
    """A Label Studio API error as a one-line reason: ``HTTP 400: <Label Studio's answer>``."""
    status = getattr(e, "status_code", None)
    body = str(getattr(e, "body", "") or "")[:300]
    return f"HTTP {status}: {body}" if status is not None else f"{type(e).__name__}: {str(e)[:300]}"


class PredictionWriter:
    """Writes finished predictions to Label Studio in bulk from its own thread (module docstring).

    ``regions(prediction)``: how many regions a prediction holds (the layout's ``regions``), for the
    summary's boxes/empty counts; ``lock`` guards ``summary`` (the job shares it); ``on_done(n)`` is
    called after ``n`` outcomes were counted (progress)."""

    def __init__(self, client, project_id: int, version: str, summary: "Summary", regions: Callable[[dict], int], *,
                 lock: Optional[threading.Lock] = None, on_done: Callable[[int], None] = lambda n: None,
                 options: WriteOptions = WriteOptions(),
                 retry: RetryPolicy = RetryPolicy(attempts=4, backoff=1.0, max_wait=15.0)):
        self.client, self.project_id, self.version = client, project_id, version
        self.s, self.regions, self.on_done = summary, regions, on_done
        self.lock = lock or threading.Lock()
        self.batch_size, self.rate = max(1, options.batch), options.rate
        self.flush_seconds, self.retry = options.flush_seconds, retry
        self.requests = 0  # write requests sent (bulk and single)
        self.write_seconds = 0.0
        self._existing: dict = {}  # task id -> predictions of this version it had when listed (when not 0)
        self._q: queue.Queue = queue.Queue()
        self._next_write = 0.0
        self._thread = threading.Thread(target=self._loop, name="prediction-writer", daemon=True)
        self._thread.start()

    def put(self, outcome: TaskOutcome, existing: int = 0) -> None:
        """Write ``outcome`` (it has a prediction); ``existing``: predictions of this version the task
        already had when it was listed (``--no-only-missing``), so a lost answer is judged right."""
        if existing:
            self._existing[outcome.task_id] = existing
        self._q.put(outcome)

    def close(self) -> None:
        """Write everything put so far, then stop; the summary's write counts are set."""
        self._q.put(None)
        self._thread.join()
        with self.lock:
            self.s.write_requests, self.s.write_seconds = self.requests, self.write_seconds

    # the thread
    def _loop(self) -> None:
        buf: list[TaskOutcome] = []
        oldest, closing = 0.0, False
        while not (closing and not buf):
            if not closing:
                try:
                    timeout = None if not buf else max(0.0, oldest + self.flush_seconds - time.monotonic())
                    item = self._q.get(timeout=timeout)
                    if item is None:
                        closing = True
                    else:
                        oldest = oldest if buf else time.monotonic()
                        buf.append(item)
                        if len(buf) < self.batch_size:
                            continue
                except queue.Empty:
                    pass
            while buf and (closing or len(buf) >= self.batch_size or time.monotonic() - oldest >= self.flush_seconds):
                chunk, buf = buf[:self.batch_size], buf[self.batch_size:]
                self._pace(len(chunk))
                try:
                    self._write(chunk)
                except Exception as e:  # noqa: BLE001 - the writer must outlive any one bad answer
                    self._failed(chunk, f"import_predictions: {type(e).__name__}: {str(e)[:200]}")
                oldest = time.monotonic()

    def _pace(self, n: int) -> None:
        wait = self._next_write - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next_write = time.monotonic() + (n / self.rate if self.rate > 0 else 0.0)

    @staticmethod
    def _payload(o: TaskOutcome) -> dict:
        p = o.prediction
        return {"task": o.task_id, "result": p["result"], "score": p.get("score"), "model_version": p["model_version"]}

    def _landed(self, outcomes: list[TaskOutcome]) -> list[TaskOutcome]:
        """Those of ``outcomes`` whose task now has more predictions of this version than when listed."""
        out = []
        for o in outcomes:
            n = sum(1 for p in self.client.predictions.list(task=o.task_id)
                    if getattr(p, "model_version", None) == self.version)
            if n > self._existing.get(o.task_id, 0):
                out.append(o)
        return out

    def _write(self, chunk: list[TaskOutcome]) -> None:
        todo = list(chunk)
        first = True

        def attempt():
            nonlocal todo, first
            if not first:  # the previous answer was lost: it may have landed; never send a task twice
                landed = self._landed(todo)
                if landed:
                    log.info("%d prediction(s) of a write whose answer was lost did land", len(landed))
                    self._stored(landed)
                    todo = [o for o in todo if o not in landed]
            first = False
            if not todo:
                return None
            t0 = time.perf_counter()
            try:
                self.requests += 1
                return self.client.projects.import_predictions(id=self.project_id,
                                                               request=[self._payload(o) for o in todo])
            except Exception as e:  # noqa: BLE001 - sorted below: lost answers are retried, refusals are not
                status = getattr(e, "status_code", None)
                if status is None or status in (408, 429) or status >= 500:
                    raise Transient(api_reason(e), status=status) from None
                raise
            finally:
                self.write_seconds += time.perf_counter() - t0

        try:
            resp = self.retry.call(attempt, on_retry=lambda n, exc, wait: log.warning(
                "writing %d prediction(s): %s; retry %d in %.1f s", len(todo), exc, n, wait))
        except Transient as e:
            self._failed(todo, f"import_predictions: {e}")
            return
        except Exception as e:  # noqa: BLE001 - refused (4xx): one create per task names the refused ones
            log.warning("Label Studio refused a write of %d prediction(s) (%s): writing them one by one",
                        len(todo), api_reason(e))
            self._write_singly(todo)
            return
        if resp is None:
            return
        created = getattr(resp, "created", None)
        if created is None or created == len(todo):
            self._stored(todo)
            return
        # fewer created than sent (Label Studio drops predictions its config check rejects): find which
        landed = self._landed(todo)
        self._stored(landed)
        self._write_singly([o for o in todo if o not in landed])

    def _write_singly(self, outcomes: list[TaskOutcome]) -> None:
        for o in outcomes:
            t0 = time.perf_counter()
            try:
                self.requests += 1
                self.client.predictions.create(**self._payload(o))
            except Exception as e:  # noqa: BLE001 - one refused prediction fails its task only
                self._failed([o], f"predictions.create: {api_reason(e)}")
                continue
            finally:
                self.write_seconds += time.perf_counter() - t0
            self._stored([o])

    def _stored(self, outcomes: list[TaskOutcome]) -> None:
        with self.lock:
            for o in outcomes:
                n = self.regions(o.prediction)
                self.s.predicted += 1
                self.s.boxes += n
                self.s.empty += n == 0
        self.on_done(len(outcomes))

    def _failed(self, outcomes: list[TaskOutcome], reason: str) -> None:
        with self.lock:
            for o in outcomes:
                log.warning("task %s: %s", o.task_id, reason)
                self.s.failed.append({"task": o.task_id, "reason": reason})
        self.on_done(len(outcomes))
