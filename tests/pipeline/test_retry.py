"""pipeline.retry: the one retry policy (waits, attempts, Retry-After, deadline, what is retried)."""
from __future__ import annotations

import io
import time

import pytest
import requests

from pipeline.retry import RetryPolicy, Transient, retry_after_seconds, transient_status


def flaky(errors):
    """A callable that raises ``errors`` in turn, then returns how many calls it took."""
    seq, calls = list(errors), []

    def fn():
        calls.append(1)
        if seq:
            raise seq.pop(0)
        return len(calls)
    return fn, calls


def test_exponential_waits_capped_and_retry_after_as_a_floor():
    sleeps, seen = [], []
    fn, _ = flaky([Transient("a"), Transient("b", retry_after=7.0), Transient("c"), Transient("d")])
    policy = RetryPolicy(attempts=5, backoff=1.0, max_wait=5.0, jitter=0)
    assert policy.call(fn, sleep=sleeps.append, on_retry=lambda n, e, w: seen.append((n, str(e), w))) == 5
    # 1, then max(2, Retry-After 7) capped at 5, then 4, then 8 capped at 5
    assert sleeps == [1.0, 5.0, 4.0, 5.0]
    assert seen == [(1, "a", 1.0), (2, "b", 5.0), (3, "c", 4.0), (4, "d", 5.0)]


def test_jitter_stays_within_its_share_of_the_backoff():
    policy = RetryPolicy(backoff=2.0, jitter=0.5, max_wait=100)
    waits = [policy.wait(3) for _ in range(200)]
    assert all(8.0 <= w <= 9.0 for w in waits) and len(set(waits)) > 1


def test_gives_up_after_attempts_with_the_last_error():
    fn, calls = flaky([Transient("HTTP 503 for x", status=503)] * 10)
    with pytest.raises(Transient, match="HTTP 503") as e:
        RetryPolicy(attempts=3, backoff=0, jitter=0).call(fn, sleep=lambda s: None)
    assert len(calls) == 3 and e.value.status == 503


def test_other_errors_are_not_retried():
    fn, calls = flaky([ValueError("bad answer")])
    with pytest.raises(ValueError):
        RetryPolicy(attempts=5, backoff=0).call(fn, sleep=lambda s: None)
    assert len(calls) == 1
    fn, calls = flaky([KeyError("x"), KeyError("y")])
    assert RetryPolicy(attempts=5, backoff=0).call(fn, retry_on=(KeyError,), sleep=lambda s: None) == 3


def test_deadline_ends_retries_before_a_wait_that_would_pass_it():
    fn, calls = flaky([Transient("down")] * 10)
    sleeps = []

    def sleep(s):   # real time: the deadline is measured on the clock
        sleeps.append(s)
        time.sleep(s)
    with pytest.raises(Transient):
        RetryPolicy(attempts=10, backoff=0.2, jitter=0, deadline=0.5).call(fn, sleep=sleep)
    assert sleeps == [0.2] and len(calls) == 2     # the next wait (0.4 s) would end after 0.5 s


def test_retry_after_header_forms():
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("-1") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None   # date form: our own backoff


def test_transient_status_raises_on_429_and_5xx_only():
    def resp(status, headers=None):
        r = requests.Response()
        r.status_code, r.url, r.raw = status, "http://127.0.0.1:1/x", io.BytesIO(b"")
        r.headers.update(headers or {})
        return r
    with pytest.raises(Transient) as e:
        transient_status(resp(429, {"Retry-After": "2"}))
    assert (e.value.status, e.value.retry_after, str(e.value)) == (429, 2.0, "HTTP 429 for http://127.0.0.1:1/x")
    with pytest.raises(Transient, match="HTTP 502 for the VLM server"):
        transient_status(resp(502), "the VLM server")
    ok = resp(404)
    assert transient_status(ok) is ok
