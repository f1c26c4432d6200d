"""One CPU per row, for rows whose operation crosses threads.

Such a row calls :func:`one_cpu` first, in its worker process, peers and
floors alike. Unpinned, on a small VM, a thread wakeup costs ~12 µs when the
two threads share a CPU and ~80-110 µs when the wakeup crosses CPUs, and
which one a round gets is down to the scheduler: the same row then measures
25 µs in one round and 110 µs in the next, and the per-round ratios spread
over 0.3..4.5x. Pinned, every row pays the same-CPU handoff and the ratios
compare the libraries' own work. Set ``BENCH_PIN_CPU=0`` to measure unpinned.
"""

from __future__ import annotations

import os
import threading

__all__ = ("one_cpu",)


def one_cpu() -> None:
    """Pin this worker process (every thread it has, and so every thread it
    makes) to one CPU; see the module docstring. ``BENCH_PIN_CPU=0``: don't."""
    if os.environ.get("BENCH_PIN_CPU", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    if len(allowed) <= 1:
        return
    cpu = {max(allowed)}
    for thread in threading.enumerate():
        if thread.native_id is not None:
            os.sched_setaffinity(thread.native_id, cpu)
