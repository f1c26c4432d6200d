"""Yield once before blocking: the idle step of the loops that pets run.

A loop about to block until another thread wakes it first gives the CPU and
the GIL away once (``os.sched_yield``, which releases the GIL). The thread
about to wake it, often waiting for that very GIL, then only queues its
work, found when the yield returns, instead of waking a blocked loop that
would at once wait for the GIL the waker holds (two more thread switches).
While such yields find nothing, the loop yields less and less often (a
doubling back-off up to one idle in 64), so a loop idle for long blocks at
once and costs no CPU. pet_executor's scheduler does the same, inlined in
its hot loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ("IdleYield",)

_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)

#: At most one idle in this many yields while the yields find nothing.
_MAX_BACKOFF = 64


class IdleYield:
    """The back-off state of one loop (see the module docstring)."""

    __slots__ = ("backoff", "skip")

    available = _sched_yield is not None

    def __init__(self) -> None:
        self.skip = 0  # idles left that block at once, after yields in vain
        self.backoff = 1

    def first(self, arrived: Callable[[], object]) -> bool:
        """Yield, unless backing off, and say whether ``arrived()`` (called
        after the yield) found work: then the caller need not block."""
        if _sched_yield is None:
            return False
        if self.skip:
            self.skip -= 1
            return False
        _sched_yield()
        if arrived():
            self.backoff = 1
            return True
        self.skip = self.backoff
        self.backoff = min(2 * self.backoff, _MAX_BACKOFF)
        return False
