"""Run a function in n threads that start at the same instant (load-once tests)."""
import threading


def run_at_once(n: int, fn, timeout: float = 60.0) -> tuple[list, list]:
    """``fn(i)`` for i in range(n), each in its own thread released by one barrier; (results, errors)."""
    barrier = threading.Barrier(n)
    got, errors = [], []

    def worker(i):
        try:
            barrier.wait()
            got.append(fn(i))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return got, errors
