"""Time: ``now``, ``sleep``, ``sleep_until``, ``timeout`` and ``timeout_at``.

Time is the run's clock (see ``_clock``), so under a ``MockClock`` a test
controls it. Timers live in the kernel; these futures work in pet_executor
tasks only (a foreign host has timers of its own).
"""

from __future__ import annotations

import math

from ._future import Context, Poll
from ._kernel import (
    CancelScope,
    FutureBase,
    Kernel,
    Timer,
    _get_ident,
    _kernel_or_raise,
    _trap_await,
)

__all__ = ("now", "sleep", "sleep_until", "timeout", "timeout_at")

_PENDING = Poll.PENDING
_READY = Poll.ready(None)


def now() -> float:
    """The current time on the run's clock, in seconds."""
    return _kernel_or_raise("pet_executor.now()")._now()


class _Sleep(FutureBase[None]):
    """Ready once the clock reaches a deadline. Inert until polled: the
    kernel (and, for a relative sleep, the deadline) is bound at the first
    poll, so a sleep made before a run starts works in it."""

    __slots__ = ("_deadline", "_kernel", "_seconds", "_timer")

    def __init__(self, *, seconds: float = 0.0, deadline: float | None = None) -> None:
        self._seconds = seconds
        self._deadline = deadline
        self._kernel: Kernel | None = None
        self._timer: Timer | None = None

    def poll(self, cx: Context, /) -> Poll[None]:
        kernel = self._kernel
        if kernel is None:
            kernel = self._kernel = _kernel_or_raise("a pet_executor sleep")
            if self._deadline is None:
                self._deadline = kernel._now() + self._seconds
        elif _get_ident() != kernel._tid:
            raise RuntimeError("a pet_executor sleep can only be polled on its kernel's thread")
        deadline: float = self._deadline  # type: ignore[assignment]
        timer = self._timer
        if kernel._now() >= deadline:
            if timer is not None:
                kernel._cancel_timer(timer)
                self._timer = None
            return _READY
        if deadline == math.inf:
            return _PENDING  # forever: no timer (a test clock must not jump to infinity)
        if timer is None:
            self._timer = kernel._call_at(deadline, cx.waker.wake)
        else:
            timer.fn = cx.waker.wake  # the most recent waker wins
        return _PENDING

    def drop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __repr__(self) -> str:
        if self._deadline is None:
            return f"<sleep {self._seconds} s>"
        return f"<sleep until {self._deadline}>"


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` on the run's clock; ``sleep(0)`` just lets the other
    ready tasks run first. A cancel point either way."""
    if seconds > 0:
        await _Sleep(seconds=seconds)
    elif seconds <= 0:
        await _trap_await(None)
    else:
        raise ValueError("sleep() got NaN seconds")


def sleep_until(deadline: float) -> _Sleep:
    """A future that is ready once the run's clock reads ``deadline`` (see
    :func:`now`)."""
    if math.isnan(deadline):
        raise ValueError("sleep_until() got a NaN deadline")
    return _Sleep(deadline=deadline)


def timeout(seconds: float) -> CancelScope:
    """``with timeout(seconds):`` cancels the block if it runs longer than
    ``seconds`` (counted from entering it); once the block's cleanup has run,
    the scope raises ``TimeoutError``."""
    if math.isnan(seconds):
        raise ValueError("timeout() got NaN seconds")
    return CancelScope._failing(after=seconds)


def timeout_at(deadline: float) -> CancelScope:
    """Like :func:`timeout`, with an absolute deadline on the run's clock."""
    if math.isnan(deadline):
        raise ValueError("timeout_at() got a NaN deadline")
    return CancelScope._failing(at=deadline)
