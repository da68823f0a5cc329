"""The one timing loop of the package: ``emo bench``, ``emo zoo`` and ONNX latencies all time through it."""

import statistics
import time
from typing import Callable, Dict, List, Optional

__all__ = ['time_interleaved', 'summary']


def time_interleaved(
    runners: Dict[str, Callable[[], object]],
    rounds: int,
    warmup: int,
    on_call: Optional[Callable[[], object]] = None,
) -> Dict[str, List[float]]:
    """Milliseconds per call of each runner; every round calls each runner once, in a rotating order, so a
    machine that slows down mid-run slows all of them alike. ``on_call`` runs after every call (a progress bar)."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
            if on_call is not None:
                on_call()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - start) * 1000)
            if on_call is not None:
                on_call()
    return times


def summary(times: List[float]) -> Dict[str, float]:
    """Median, min and max milliseconds of the timed rounds, and how many there were."""
    return {'median_ms': statistics.median(times), 'min_ms': min(times), 'max_ms': max(times), 'runs': len(times)}
