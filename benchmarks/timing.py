"""Shared timing helper for the benchmarks (ratios are taken within one run)."""
import time


def best_of(fn, n: int = 5) -> float:
    """Fastest of ``n`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def timed_runs(fn, n: int) -> list:
    """Seconds of each of ``n`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times
