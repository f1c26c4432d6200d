"""The vocabulary of futures: ``Poll``, ``Waker``, ``Context`` and the ``Future`` protocol.

A future is inert: nothing happens until someone polls it. ``poll(cx)`` either
finishes (returns ``Poll.ready(value)``, or raises: the future failed) or
returns ``Poll.PENDING`` after arranging for ``cx.waker.wake()`` to be called
when polling again could make progress. Whoever polls (our kernel, or a
foreign host through an adapter) decides what waking means; the future only
keeps the waker of its most recent poll.

This module imports nothing of the runtime, so an adapter can drive our
futures with a waker of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, final, runtime_checkable

__all__ = ("Context", "Future", "Poll", "Waker")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@final
class Poll(Generic[T_co]):
    """The answer of ``poll``: ``Poll.ready(value)`` or ``Poll.PENDING``.

    ``Poll.PENDING`` is a singleton; compare it with ``is``.
    """

    __slots__ = ("value",)

    #: Not ready yet; the future will wake the waker it was polled with.
    PENDING: ClassVar[Poll[Any]]

    value: T_co

    def __init__(self, value: T_co) -> None:
        self.value = value

    @staticmethod
    def ready(value: T) -> Poll[T]:
        """The future finished with ``value``."""
        if value is None:
            return _READY_NONE  # type: ignore[return-value]
        return Poll(value)

    @property
    def is_ready(self) -> bool:
        return self is not Poll.PENDING

    @property
    def is_pending(self) -> bool:
        return self is Poll.PENDING

    def __repr__(self) -> str:
        if self is Poll.PENDING:
            return "Poll.PENDING"
        return f"Poll.ready({self.value!r})"


Poll.PENDING = object.__new__(Poll)
_READY_NONE: Poll[None] = Poll(None)


class Waker:
    """Says "poll this again". Thread-safe, idempotent, cheap to clone and compare.

    ``Waker(callback)`` makes a waker that calls ``callback()`` (which must be
    thread-safe, quick, and must not poll anything itself: it schedules a
    poll). The kernel's tasks are wakers of their own: waking a task twice
    before it runs schedules it once, from any thread.
    """

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback

    def wake(self) -> None:
        """Schedule a poll of whatever this waker belongs to."""
        self._callback()

    def will_wake(self, other: Waker) -> bool:
        """Whether waking ``other`` would do the same as waking this waker.

        A future that is polled again with an equivalent waker need not
        re-register it.
        """
        if self is other:
            return True
        if type(self) is not type(other) or type(self) is not Waker:
            return False
        return bool(self._callback == other._callback)

    def clone(self) -> Waker:
        """A waker that does the same; wakers are immutable, so this is ``self``."""
        return self

    def __repr__(self) -> str:
        return f"<Waker calling {self._callback!r}>"


@final
class Context:
    """What a future is polled with: the waker to wake when it can progress."""

    __slots__ = ("waker",)

    def __init__(self, waker: Waker) -> None:
        self.waker = waker

    def __repr__(self) -> str:
        return f"<Context waker={self.waker!r}>"


@runtime_checkable
class Future(Protocol[T_co]):
    """Anything with ``poll(cx) -> Poll``: pollable by the kernel and by adapters.

    Rules, as in Rust: ``poll`` never blocks; when it returns ``Poll.PENDING``
    it has stored ``cx.waker`` (the most recent one wins) and will wake it
    when progress is possible; waking more often than needed is allowed (the
    future is then polled again and answers ``PENDING`` again). Once ready,
    a future is not polled again. A future may also define ``drop()``: it is
    called, at most once, when the future is abandoned before it finished
    (cancelling is dropping), to deregister its waker and hand back anything
    it was granted. Subclass :class:`pet_executor.FutureBase` to make a
    hand-written future awaitable in pet_executor tasks.
    """

    def poll(self, cx: Context, /) -> Poll[T_co]: ...


class HostWaker(Waker):
    """A waker of another runtime's task that awaits a pet_executor future
    (see :func:`drive_in_host`). ``woken`` records a wake that came while
    the task was not parked (during its own poll): it then polls again at
    once instead of parking."""

    __slots__ = ("woken",)

    woken: bool


async def drive_in_host(
    future: Future[T], waker: HostWaker, park: Callable[[], Awaitable[object]]
) -> T:
    """Poll ``future`` from a task of another runtime until it is ready:
    between two polls, ``await park()`` suspends the task the host's way
    until ``waker`` is woken. Cancelling the task drops the future."""
    cx = Context(waker)
    try:
        ready = future.poll(cx)
        while ready is Poll.PENDING:
            if not waker.woken:
                await park()
            waker.woken = False
            ready = future.poll(cx)
    except BaseException:
        drop = getattr(future, "drop", None)
        if drop is not None:
            drop()
        raise
    return ready.value
