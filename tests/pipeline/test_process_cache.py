"""pipeline/process_cache.py: one load per key under concurrent threads, keys apart, clear, failing loads,
stale values, fork."""
import os
import threading
import time

import pytest

from pipeline.process_cache import ProcessCache, StillLoading
from tests.threads import run_at_once


def _loading(cache, key, value):
    """A thread inside ``cache.get(key, ...)``'s load until the returned event is set; then it stores value."""
    started, release = threading.Event(), threading.Event()

    def load():
        started.set()
        release.wait(10)
        return value
    thread = threading.Thread(target=cache.get, args=(key, load))
    thread.start()
    assert started.wait(5)
    return thread, release


def test_one_load_under_concurrent_threads():
    cache = ProcessCache("test")
    loads = []

    def load():
        loads.append(threading.get_ident())
        time.sleep(0.2)  # long enough for every other thread to arrive while it loads
        return object()
    got, errors = run_at_once(8, lambda i: cache.get("weights", load))
    assert not errors and len(got) == 8
    assert len(loads) == 1 and len({id(v) for v in got}) == 1


def test_keys_are_distinct_and_load_in_parallel():
    cache = ProcessCache("test")
    inside = threading.Barrier(2, timeout=5)  # both loads must be running at once to pass it

    def load(key):
        inside.wait()
        return key.upper()
    got, errors = run_at_once(2, lambda i: cache.get(f"k{i}", lambda: load(f"k{i}")))
    assert not errors and sorted(got) == ["K0", "K1"]
    assert sorted(cache.keys()) == ["k0", "k1"] and cache.peek("k0") == "K0" and "k1" in cache


def test_clear_forgets_values():
    cache = ProcessCache("test")
    a = cache.get("k", object)
    assert cache.get("k", object) is a
    cache.clear()
    assert len(cache) == 0 and cache.peek("k") is None
    assert cache.get("k", object) is not a


@pytest.mark.parametrize("wait", [None, 5.0])  # with wait: the load's error reaches the waiting caller
def test_a_failing_load_does_not_poison_the_key(wait):
    cache = ProcessCache("test")
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("weights not there yet")
        return "loaded"
    with pytest.raises(OSError, match="not there yet"):
        cache.get("k", load, wait=wait)
    assert "k" not in cache
    assert cache.get("k", load, wait=wait) == "loaded" and len(calls) == 2


def test_waiters_of_a_failing_load_try_again_one_at_a_time():
    cache = ProcessCache("test")
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.1)
        if len(calls) == 1:
            raise OSError("first try fails")
        return "loaded"
    got, errors = run_at_once(4, lambda i: cache.get("k", load))
    assert len(errors) == 1 and got == ["loaded"] * 3 and len(calls) == 2


def test_a_stale_value_is_loaded_again():
    cache = ProcessCache("test")
    version = {"v": 1}
    value = cache.get("f", lambda: version["v"], fresh=lambda v: v == version["v"])
    assert value == 1
    assert cache.get("f", lambda: 99, fresh=lambda v: v == version["v"]) == 1  # still fresh: no load
    version["v"] = 2
    assert cache.get("f", lambda: version["v"], fresh=lambda v: v == version["v"]) == 2


def test_a_load_that_straddles_clear_does_not_store():
    cache = ProcessCache("test")
    thread, release = _loading(cache, "k", "old")
    cache.clear()
    release.set()
    thread.join(5)
    assert "k" not in cache


def test_put_and_pop_inject_and_remove():
    cache = ProcessCache("test")
    cache.put("svc", "injected")
    assert cache.get("svc", lambda: "built") == "injected"
    assert cache.pop("svc") == "injected" and cache.get("svc", lambda: "built") == "built"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_inherit_a_held_lock():
    """A parent thread is loading (holding the key's lock) when the process forks: the child loads the key
    itself instead of waiting forever, and keeps the values loaded before the fork."""
    cache = ProcessCache("test")
    cache.get("ready", lambda: "parent's")
    t, release = _loading(cache, "loading", "parent")
    pid = os.fork()
    if pid == 0:  # child: exit 0 when it got both values, 1 otherwise
        ok = cache.get("loading", lambda: "child") == "child" and cache.get("ready", lambda: "?") == "parent's"
        os._exit(0 if ok else 1)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on a lock held by the parent's loading thread")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        t.join(5)
    assert cache.peek("loading") == "parent"


def test_a_bounded_wait_gives_up_and_the_load_goes_on():
    """get(wait=): the caller gets StillLoading when the wait runs out; the load finishes in its own thread and
    the next caller takes its value (one load, however many callers gave up)."""
    cache = ProcessCache("test")
    started, release, loads = threading.Event(), threading.Event(), []

    def load():
        loads.append(threading.get_ident())
        started.set()
        release.wait(10)
        return "weights"
    t0 = time.monotonic()
    with pytest.raises(StillLoading):
        cache.get("k", load, wait=0.2)
    assert time.monotonic() - t0 < 5 and started.is_set() and loads[0] != threading.get_ident()
    with pytest.raises(StillLoading):
        cache.get("k", load, wait=0.1)  # joins the running load, starts no other
    release.set()
    assert cache.get("k", load, wait=5) == "weights" and len(loads) == 1
    assert cache.get("k", lambda: "again") == "weights"


def test_a_background_load_runs_outside_the_callers_context():
    """A context variable the caller set (a request's deadline, say) is not the load's."""
    import contextvars
    var = contextvars.ContextVar("request", default="none")
    var.set("request 1")
    assert ProcessCache("test").get("k", var.get, wait=5) == "none"
