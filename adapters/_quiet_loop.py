"""An asyncio loop that idles on a thread primitive while it has no I/O.

A stock asyncio loop sleeps in ``epoll``/``kqueue`` even when nothing but its
own wake-up socket is registered, so every ``call_soon_threadsafe`` from
another thread is a socket write, a wake-up of the selector, and two reads to
drain the socket. A pet's loop usually has no I/O of its own: its work comes
from other threads. This loop then waits on a ``queue.SimpleQueue`` instead,
and a wake-up from another thread costs one put (a lock release), as
pet_executor's scheduler does. As soon as anything else is registered (a
socket, a pipe, a subprocess), it sleeps in the selector as usual.

The hand-off rule that loses no wake-up: the loop publishes how it sleeps
(``_sleeping``) before it looks at its ready queue one last time; a waker
appends to the ready queue (``call_soon_threadsafe`` does) before it reads
``_sleeping``. Under the GIL one of the two sees the other's write.

Used for the loops of pets only: they never run on the main thread, so no
signal handler writes to the wake-up socket behind the loop's back (on the
main thread, ``signal.set_wakeup_fd`` does, and a loop idling on a queue
would not see it).

Before it sleeps on the queue, the loop yields once while still marked
running (``adapters/_idle.py``): a thread about to wake it then only appends
to the ready queue.
"""

from __future__ import annotations

import asyncio
import selectors
from queue import Empty, SimpleQueue
from typing import Any

from ._idle import IdleYield

__all__ = ("QuietEventLoop",)

#: What the loop is doing, for its wakers: running (nothing to do for them),
#: waiting on the queue (put), or in the selector (write to the socket).
_RUNNING = 0
_ON_QUEUE = 1
_IN_SELECTOR = 2


class _QuietSelector(selectors.DefaultSelector):
    """The platform's selector, waiting on a queue while only the loop's own
    wake-up socket is registered."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = _RUNNING
        self.wakeups: SimpleQueue[None] = SimpleQueue()
        self.ready: Any = ()  # the loop's ready queue, set by the loop
        self.idle = IdleYield()

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        # Only the wake-up socket registered: nothing but another thread (or a
        # timer, through ``timeout``) can give the loop work.
        if len(self.get_map()) > 1:
            self.sleeping = _IN_SELECTOR
            if self.ready:  # queued after the loop chose its timeout
                timeout = 0
            try:
                events: list[tuple[Any, int]] = super().select(timeout)
            finally:
                self.sleeping = _RUNNING
            return events
        if timeout is not None and timeout <= 0:
            return []
        # Still marked running: a waker meanwhile only appends (see _idle).
        if not self.ready and self.idle.first(self.ready.__len__):
            return []
        self.sleeping = _ON_QUEUE
        wakeups = self.wakeups
        try:
            if not self.ready:
                wakeups.get(True, timeout)
        except Empty:
            pass
        finally:
            self.sleeping = _RUNNING
        # Two wakers may both have seen the loop asleep: drop the extra put,
        # or the next sleep would end at once.
        while not wakeups.empty():
            wakeups.get_nowait()
        return []


class QuietEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop that idles on a queue while it has no I/O
    registered (see the module's docstring)."""

    _selector: _QuietSelector

    def __init__(self) -> None:
        selector = _QuietSelector()
        super().__init__(selector)
        selector.ready = self._ready  # type: ignore[attr-defined]

    def _write_to_self(self) -> None:
        selector = self._selector
        sleeping = selector.sleeping
        if sleeping == _ON_QUEUE:
            selector.wakeups.put(None)
        elif sleeping == _IN_SELECTOR:
            super()._write_to_self()  # type: ignore[misc]
        # Running: the loop takes its ready queue before it sleeps again.
