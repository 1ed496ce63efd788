"""The one process-wide, keyed, load-once cache: where whatever is heavy lives once per process.

Label Studio's backend contract builds a model object per request, so weights, clients, stores and
services live here instead, one ``ProcessCache`` per kind of thing::

    providers = ProcessCache("providers")
    vlm = providers.get(("vlm", model), lambda: load_vlm(model))

``get(key, load)`` returns the value stored under ``key``, calling ``load()`` first when there is
none. Concurrent first callers of one key wait on that key's lock, so two threads never load the
same weights twice; different keys load in parallel. A ``load`` that raises stores nothing: the
error reaches the caller and the next caller tries again. ``fresh(value)`` (optional) says whether
a stored value is still good (e.g. the file it came from has not changed); a stale one is loaded
again under the key's lock. ``wait`` (seconds, optional) bounds how long the caller waits: the load
then runs in a thread of its own and, when the wait runs out, the caller gets ``StillLoading`` while
the load goes on; a later ``get`` of that key waits for the same load (or takes its value).

Fork: a child keeps the parent's values (weights loaded before a fork are shared copy-on-write) but
gets new locks, so a lock a parent thread held at fork time cannot block the child forever.

Not here: size bounds or eviction (values live until ``pop`` or ``clear``, which tests use), and
per-request or per-image memos (those stay with their owner, e.g. SAM's image embeddings)."""
from __future__ import annotations

import contextvars
import os
import threading
import weakref
from concurrent import futures
from concurrent.futures import Future
from typing import Callable, Generic, Hashable, Optional, TypeVar

V = TypeVar("V")
_MISSING = object()
_caches: "weakref.WeakSet[ProcessCache]" = weakref.WeakSet()


class StillLoading(TimeoutError):
    """``get(..., wait=)`` gave up waiting; the load goes on in its own thread."""


class ProcessCache(Generic[V]):
    def __init__(self, name: str):
        self.name = name  # for repr and logs
        self._values: dict[Hashable, V] = {}
        self._generation = 0  # bumped by clear(): a load started before it does not store its value
        self._new_locks()
        _caches.add(self)

    def _new_locks(self) -> None:
        self._lock = threading.Lock()  # guards the dicts only; never held while loading
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._loads: dict[Hashable, Future] = {}  # the running load of each key that ``get(wait=)`` started

    def get(self, key: Hashable, load: Callable[[], V], fresh: Optional[Callable[[V], bool]] = None,
            wait: Optional[float] = None) -> V:
        """The value under ``key``, loaded by ``load()`` once (again when ``fresh(value)`` is False).
        ``wait``: give up after that many seconds (StillLoading) and leave the load running."""
        value = self._values.get(key, _MISSING)
        if value is not _MISSING and (fresh is None or fresh(value)):
            return value
        if wait is not None:
            return self._wait_for(key, load, fresh, wait)
        return self._load(key, load, fresh)

    def _wait_for(self, key: Hashable, load: Callable[[], V], fresh, wait: float) -> V:
        with self._lock:
            job = self._loads.get(key)
            if job is None:
                job = self._loads[key] = Future()
                # a new, empty context: the load belongs to no request (none of its deadline, say)
                threading.Thread(target=contextvars.Context().run, args=(self._run_load, key, load, fresh, job),
                                 name=f"load {self.name}", daemon=True).start()
        done, _ = futures.wait([job], timeout=max(0.0, wait))
        if not done:
            raise StillLoading(f"{self.name}: {key!r} still loading after {wait:g} s")
        return job.result()

    def _run_load(self, key: Hashable, load: Callable[[], V], fresh, job: Future) -> None:
        try:
            job.set_result(self._load(key, load, fresh))
        except BaseException as e:  # noqa: BLE001 - handed to every caller waiting for this load
            job.set_exception(e)
        finally:
            with self._lock:
                if self._loads.get(key) is job:
                    del self._loads[key]

    def _load(self, key: Hashable, load: Callable[[], V], fresh) -> V:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
            generation = self._generation
        with key_lock:
            value = self._values.get(key, _MISSING)
            if value is not _MISSING and (fresh is None or fresh(value)):
                return value  # another thread loaded it while this one waited
            value = load()
            with self._lock:
                if self._generation == generation:
                    self._values[key] = value
            return value

    def peek(self, key: Hashable, default=None):
        """The value under ``key`` if one is loaded, else ``default`` (never loads)."""
        return self._values.get(key, default)

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` under ``key`` (injection: tests, a host that builds its own)."""
        with self._lock:
            self._values[key] = value

    def pop(self, key: Hashable, default=None):
        with self._lock:
            self._key_locks.pop(key, None)
            return self._values.pop(key, default)

    def keys(self) -> list:
        with self._lock:
            return list(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every value (tests; freeing memory between projects)."""
        with self._lock:
            self._values.clear()
            self._key_locks.clear()
            self._loads.clear()
            self._generation += 1

    def __repr__(self) -> str:
        return f"ProcessCache({self.name!r}, {len(self._values)} value(s))"


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._new_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
