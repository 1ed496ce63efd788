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
again under the key's lock.

Fork: a child keeps the parent's values (weights loaded before a fork are shared copy-on-write) but
gets new locks, so a lock a parent thread held at fork time cannot block the child forever.

Not here: size bounds or eviction (values live until ``pop`` or ``clear``, which tests use), and
per-request or per-image memos (those stay with their owner, e.g. SAM's image embeddings)."""
from __future__ import annotations

import os
import threading
import weakref
from typing import Callable, Generic, Hashable, Optional, TypeVar

V = TypeVar("V")
_MISSING = object()
_caches: "weakref.WeakSet[ProcessCache]" = weakref.WeakSet()


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

    def get(self, key: Hashable, load: Callable[[], V], fresh: Optional[Callable[[V], bool]] = None) -> V:
        """The value under ``key``, loaded by ``load()`` once (again when ``fresh(value)`` is False)."""
        value = self._values.get(key, _MISSING)
        if value is not _MISSING and (fresh is None or fresh(value)):
            return value
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
            self._generation += 1

    def __repr__(self) -> str:
        return f"ProcessCache({self.name!r}, {len(self._values)} value(s))"


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._new_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
