"""Runtime-neutral synchronisation: ``Event``, ``Lock``, ``Semaphore``.

Their waiting is plain futures over wakers, so a pet_executor task awaits
them through the kernel's trap, and a foreign host (asyncio, trio, curio,
through an adapter) polls them with a waker of its own. The state of a
``Lock`` or ``Semaphore`` is guarded by a ``threading.Lock``: the pollers may
live on different threads.

``Lock`` and ``Semaphore`` are served first come, first served. A permit handed to a waiter
that is dropped (cancelled) before it saw it is passed on to the next one,
so a cancellation never loses a permit.
"""

from __future__ import annotations

import threading
from types import TracebackType

from ._future import Context, Poll, Waker
from ._kernel import FutureBase

__all__ = ("Event", "Lock", "Semaphore")

_PENDING = Poll.PENDING
_READY = Poll.ready(None)

_NEW = 0
_QUEUED = 1
_GRANTED = 2
_DONE = 3


class Event:
    """A one-shot flag: ``wait()`` until someone calls ``set()``.

    ``set()`` may be called from any thread. Once set, it stays set (make a
    new ``Event`` for the next round).
    """

    # No mutex: each step below is one atomic operation under the GIL (a
    # dict's setitem, pop, popitem, values snapshot, clear), and the order
    # (flag, then waiters; register, then re-check the flag) means a waiter
    # either is among those set() takes out of the dict or sees the flag.
    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        # Each waiting future -> the waker of its latest poll.
        self._waiters: dict[_EventWait, Waker] = {}

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter; idempotent; from any thread."""
        self._flag = True
        waiters = self._waiters
        if waiters:
            # The common case is one waiter: take it out without copying.
            try:
                last = waiters.popitem()[1]
            except KeyError:  # its wait was dropped meanwhile (another thread)
                return
            if waiters:  # more: wake them in arrival order, the last one last
                wakers = tuple(waiters.values())
                waiters.clear()
                for waker in wakers:
                    waker.wake()
            last.wake()

    def wait(self) -> _EventWait:
        """A future that is ready once the event is set."""
        wait = _EventWait()  # no __init__ to call: wait() is hot
        wait._event = self
        return wait

    def __repr__(self) -> str:
        return (
            f"<pet_executor.Event {'set' if self._flag else 'unset'}, {len(self._waiters)} waiting>"
        )


class _EventWait(FutureBase[None]):
    __slots__ = ("_event",)

    _event: Event

    def poll(self, cx: Context, /) -> Poll[None]:
        event = self._event
        flag: bool = event._flag
        if flag:
            return _READY
        waiters = event._waiters
        waiters[self] = cx.waker  # a poll again just updates the waker
        flag = event._flag
        if flag:  # set meanwhile, from another thread
            waiters.pop(self, None)
            return _READY
        return _PENDING

    def drop(self) -> None:
        self._event._waiters.pop(self, None)


class Semaphore:
    """``value`` permits; ``async with sem:`` (or ``await sem.acquire()`` and
    ``sem.release()``) holds one. ``release`` may be called from any thread
    and by any task (permits have no owner)."""

    __slots__ = ("_mutex", "_value", "_waiters")

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError(f"a semaphore's initial value must be >= 0, not {value!r}")
        self._value = value
        self._mutex = threading.Lock()
        self._waiters: dict[_Acquire, None] = {}

    @property
    def value(self) -> int:
        """Permits available now."""
        return self._value

    def acquire(self) -> _Acquire:
        """A future that is ready once it holds a permit."""
        return _Acquire(self)

    def try_acquire(self) -> bool:
        """Take a permit if one is free now (and nobody queues for one)."""
        with self._mutex:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
        return False

    def release(self) -> None:
        """Give a permit back: to the first waiter if there is one."""
        with self._mutex:
            self._check_release()
            waker = self._hand_over()
        if waker is not None:
            waker.wake()

    def _check_release(self) -> None:
        pass

    def _hand_over(self) -> Waker | None:
        # Under the mutex: one permit is free; the first waiter gets it.
        waiters = self._waiters
        if waiters:
            first = next(iter(waiters))
            del waiters[first]
            first._state = _GRANTED
            return first._waker
        self._value += 1
        return None

    async def __aenter__(self) -> None:
        await _Acquire(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<pet_executor.{name} value={self._value}, {len(self._waiters)} waiting>"


class Lock(Semaphore):
    """A mutual-exclusion lock: ``async with lock:``. Fair (first come,
    first served); not re-entrant; it has no owner, so any task (or thread)
    may release it, but releasing an unlocked lock is an error."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(1)

    def locked(self) -> bool:
        return self._value == 0

    def _check_release(self) -> None:
        if self._value:
            raise RuntimeError("release() of a pet_executor.Lock that is not locked")


class _Acquire(FutureBase[None]):
    __slots__ = ("_owner", "_state", "_waker")

    def __init__(self, owner: Semaphore) -> None:
        self._owner = owner
        self._state = _NEW
        self._waker: Waker | None = None

    def poll(self, cx: Context, /) -> Poll[None]:
        owner = self._owner
        with owner._mutex:
            state = self._state
            if state is _GRANTED:
                self._state = _DONE
                return _READY
            if state is _NEW:
                if owner._value > 0 and not owner._waiters:
                    owner._value -= 1
                    self._state = _DONE
                    return _READY
                owner._waiters[self] = None
                self._state = _QUEUED
            self._waker = cx.waker
        return _PENDING

    def drop(self) -> None:
        owner = self._owner
        waker = None
        with owner._mutex:
            if self._state is _QUEUED:
                del owner._waiters[self]
            elif self._state is _GRANTED:
                waker = owner._hand_over()  # granted but never seen: pass it on
            self._state = _DONE
        if waker is not None:
            waker.wake()
