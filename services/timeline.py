"""Wall-clock marks of the driver's phases, written into ``summary.json`` as ``timings``.

``mark("ray_up")`` records ``time.time()`` under a name; the CLI marks its entry (``main``), Ray's start
(``ray_init`` … ``ray_up``) and the Tune run (``fit_start`` … ``fit_end``). benchmarks/sweep_overhead.py
reads them to say where a sweep's time goes. Marks of one driver process; nothing else reads them.
"""
from __future__ import annotations

import time

_marks: dict[str, float] = {}


def mark(name: str) -> None:
    _marks[name] = time.time()


def marks() -> dict[str, float]:
    return dict(_marks)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
