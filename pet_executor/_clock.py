"""Clocks: the kernel's idea of "now", and how long it may really sleep.

The kernel reads time only through its clock. :class:`MonotonicClock` is
the real one. :class:`MockClock` is for tests: its time moves only when told
to (``jump``), or, with ``autojump=True``, by jumping straight to the next
deadline whenever every task is idle, so a test of a one-hour timeout takes
milliseconds and always takes the same path.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ("Clock", "MockClock", "MonotonicClock")


class Clock(ABC):
    """The time source of one run."""

    @abstractmethod
    def current_time(self) -> float:
        """Now, in seconds, on this clock's scale (only differences matter)."""

    @abstractmethod
    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How many real seconds the idle kernel may block before ``deadline``
        is due (``math.inf``: until something else wakes it)."""

    def idle_expired(self, deadline: float) -> None:  # noqa: B027 - optional hook
        """Called when the kernel blocked for the time this clock asked for,
        nothing happened, and ``deadline`` is the next one. A mock clock
        jumps here; a real clock has nothing to do."""


class MonotonicClock(Clock):
    """Real time, from ``time.monotonic``."""

    __slots__ = ()

    def current_time(self) -> float:
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


class MockClock(Clock):
    """A clock for tests: time stands still unless it is moved.

    - ``jump(seconds)`` moves it forward by hand (from a task, or from any
      thread: the kernel notices at its next turn).
    - ``autojump=True``: when every task of the run is idle, time jumps to
      the next deadline at once. ``autojump_threshold`` (real seconds) waits
      that long first, for runs that also wait on threads or sockets.
    """

    def __init__(
        self, *, start: float = 0.0, autojump: bool = False, autojump_threshold: float = 0.0
    ) -> None:
        if autojump_threshold < 0:
            raise ValueError(f"autojump_threshold must be >= 0, not {autojump_threshold!r}")
        self._now = float(start)
        self._lock = threading.Lock()
        self.autojump = autojump
        self.autojump_threshold = float(autojump_threshold)
        #: Set by the kernel while it runs with this clock: wakes it after a jump.
        self._wakeup: Callable[[], None] | None = None

    def current_time(self) -> float:
        return self._now

    def jump(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards: jump({seconds!r})")
        with self._lock:
            self._now += seconds
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        if deadline <= self._now:
            return 0.0
        return self.autojump_threshold if self.autojump else math.inf

    def idle_expired(self, deadline: float) -> None:
        if self.autojump:
            with self._lock:
                if deadline > self._now:
                    self._now = deadline

    def __repr__(self) -> str:
        return f"MockClock(time={self._now!r}, autojump={self.autojump!r})"
