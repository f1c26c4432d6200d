"""The kernel: tasks, the one trap, cancel scopes, timers and the scheduler loop.

Theory of operation
-------------------
A task wraps one coroutine. The kernel resumes it with ``send(None)`` (inside
the task's own ``contextvars`` context) and the coroutine runs until it
reaches the one trap, :func:`_trap`, the only place where a task gives
control back. The trap does the Rust part itself, on the task's stack: it
polls the awaited future with the task's :class:`~pet_executor.Context`; a
ready future returns its value without a trip through the scheduler; a
pending one makes the trap yield ``_PARK``, and the task sleeps until its
waker (the task itself) is woken, when the trap polls the same future again.
``sleep(0)`` and ``checkpoint()`` yield ``_YIELD`` instead: "run me again
after the others".

Task states, all changed on the kernel's thread only::

    SCHEDULED --step--> RUNNING --yields _PARK--> IDLE --wake--> SCHEDULED
                          |  wake while running: NOTIFIED, rescheduled at the park
                          +--returns or raises--> DONE

so waking twice schedules once, and a wake during the task's own poll (a
future that is ready at once, or a wake from its own callback) is not lost.
A wake from another thread is queued on ``_remote`` and applied on the
kernel's thread; if the kernel is idle it is also signalled.

Cancelling is dropping, with a cleanup: a cancel scope (``timeout``,
``shield``, or the task's own abort) that becomes cancelled marks the task
``_cancel_pending`` and wakes it; the trap then calls the future's ``drop()``
(so it deregisters its waker and hands back what it was granted) and raises
:class:`Cancelled` at the task's await. The exception unwinds through the
task's ``finally`` blocks to the scope that was cancelled, which swallows it
(``timeout`` turns it into ``TimeoutError``), or out of the task. Every trap
is a cancel point: a cancelled task cannot await anything outside a shield.
A task aborted before its first step never runs at all (its coroutine is
closed), as a Rust future dropped before its first poll.

The loop runs the tasks that are ready now as one batch (what they wake runs
in the next batch), then applies remote wakes and callbacks, fires due
timers, and polls the reactor when some socket has a waiter. With nothing
ready it idles: on a ``SimpleQueue`` when no socket is watched (a wake from
another thread is then one thread handoff), or in ``select`` with a
socketpair wakeup when one is. Before it blocks on the queue it yields the
CPU (and the GIL) once: the thread about to wake it usually is runnable, often
waiting for the GIL, and its wake is then a plain append that the kernel finds
on return, with no handoff at all; while such yields find nothing, the kernel
yields less and less often (down to one idle in 65).
"""

from __future__ import annotations

import contextvars
import heapq
import inspect
import itertools
import logging
import math
import os
import sys
import threading
import time
import types
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import partial
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

from bridge._context import Token, current_context
from bridge._errors import (
    Fix,
    NestedRuntimeError,
    NoRuntimeError,
    RunFinishedError,
    WrongRuntimeError,
)
from bridge._registry import get as get_adapter

from ._clock import Clock, MockClock, MonotonicClock
from ._future import Context, Future, Poll, Waker
from ._reactor import Reactor

__all__ = (
    "Cancelled",
    "CancelScope",
    "FutureBase",
    "JoinHandle",
    "Kernel",
    "KernelToken",
    "Task",
    "Timer",
    "checkpoint",
    "current_kernel",
    "current_task",
    "current_task_or_none",
    "run",
    "shield",
    "spawn",
)

T = TypeVar("T")

_log = logging.getLogger("pet_executor")

_get_ident = threading.get_ident
#: Releases the GIL and lets the other runnable threads of this CPU run (POSIX).
_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)
_PENDING = Poll.PENDING
_INF = math.inf
#: On the main thread an idle wait is cut into slices this long. A signal that
#: arrives just before the wait blocks does not interrupt it, and its handler
#: (Ctrl-C's KeyboardInterrupt) runs only when the wait returns: at the end of
#: the slice, instead of never.
_MAIN_IDLE_SLICE_S = 0.1


def _on_main_thread() -> bool:
    return _get_ident() == threading.main_thread().ident


def _wait_in_slices(wait: Callable[[float], bool], timeout: float | None) -> bool:
    """``wait(timeout)`` (True: something happened; False: it timed out), in
    slices of at most ``_MAIN_IDLE_SLICE_S``: for the main thread."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = _MAIN_IDLE_SLICE_S
        if deadline is not None:
            left = max(0.0, min(left, deadline - time.monotonic()))
        if wait(left):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


class Cancelled(BaseException):
    """Raised at a task's await when its cancel scope (or the task) was cancelled.

    A ``BaseException``, so ``except Exception`` cleanup code lets it pass.
    Let it propagate: the cancel scope that caused it catches it.
    """


class _RunState(threading.local):
    """The kernel this thread runs now (the task it is stepping is the
    kernel's ``_current``: a plain attribute is cheaper to set per step than
    a thread-local)."""

    kernel: Kernel | None = None


RUN = _RunState()


def _current() -> Task | None:
    kernel = RUN.kernel
    return None if kernel is None else kernel._current


class _Op:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


# What the trap yields to the kernel: "park me until woken", "run me again soon".
_PARK = _Op("PARK")
_YIELD = _Op("YIELD")


# -- the trap ---------------------------------------------------------------


def _trap(fut: Future[T] | None) -> Generator[object, None, T]:
    """The one place where a task gives control to the kernel.

    ``_trap(None)`` is a checkpoint: a cancel point and a turn for others.
    ``_trap(future)`` polls ``future`` until it is ready, parking in between.
    """
    kernel = RUN.kernel
    task = None if kernel is None else kernel._current
    if task is None:
        if kernel is None and fut is not None:
            # Not our runtime's thread: a task of another runtime may await
            # our future through its adapter (never on the native path).
            return (yield from _await_in_host(fut))
        raise _outside_task(fut)
    # Read through a local: the flag changes while the trap is parked, and a
    # type checker would otherwise take the first test as holding for good.
    pending: bool = task._cancel_pending
    if pending:
        raise Cancelled
    if fut is None:
        yield _YIELD
        if task._cancel_pending:
            raise Cancelled
        return None  # type: ignore[return-value]
    cx = task._cx
    if cx is None:
        cx = task._cx = Context(task)
    p = fut.poll(cx)
    while p is _PENDING:
        try:
            yield _PARK
        except BaseException:
            _drop(fut)
            raise
        if task._cancel_pending:
            _drop(fut)
            raise Cancelled
        p = fut.poll(cx)
    return p.value


def _drop(fut: object) -> None:
    drop = getattr(fut, "drop", None)
    if drop is not None:
        drop()


# The same trap for ``await _trap_await(x)`` in async code: types.coroutine
# flags a function's code (in place) as an awaitable generator, and a flagged
# generator may not be returned by ``__await__``; hence a second function
# object over the same code.
_trap_await: Callable[[Future[T] | None], Awaitable[T]] = types.coroutine(
    types.FunctionType(_trap.__code__, _trap.__globals__, "_trap_await")
)


def _await_in_host(fut: Future[T]) -> Generator[Any, Any, T]:
    """Await ``fut`` in a task of the runtime running on this thread (asyncio,
    trio, curio): its adapter polls it with a waker of that runtime's own."""
    here = current_context()
    if here.role != "event_loop" or not here.in_task or here.runtime in (None, "pet_executor"):
        raise _outside_task(fut)
    awaiting: Generator[Any, Any, T] = get_adapter(here.runtime).await_pet_future(fut).__await__()
    return awaiting


def _outside_task(fut: object) -> BaseException:
    what = type(fut).__name__ if fut is not None else "a checkpoint"
    if RUN.kernel is not None:
        return NoRuntimeError(
            f"{what} was awaited in a sync callback of the pet_executor kernel, not in a task.",
            fixes=(
                Fix(
                    "await fut  # in a callback",
                    "pet_executor.spawn(wait_for_it)  # await it in a task",
                ),
            ),
        )
    from bridge._context import current_context

    here = current_context().runtime
    if here is not None and here != "pet_executor":
        return WrongRuntimeError(
            f"a pet_executor {what} was awaited under {here}; pet_executor futures are awaited "
            f"directly only in pet_executor tasks.",
            fixes=(
                Fix(
                    "await event.wait()  # in a trio or asyncio task",
                    "await adapters.wrap(event.wait())",
                ),
            ),
        )
    return NoRuntimeError(
        f"a pet_executor {what} was awaited outside a pet_executor run.",
        fixes=(
            Fix(
                "asyncio.run(main())  # main awaits pet_executor futures", "pet_executor.run(main)"
            ),
        ),
    )


class FutureBase(Generic[T]):
    """A base class for hand-written futures: define ``poll(cx)``, and
    optionally ``drop()``; instances can then be awaited in pet_executor tasks
    (through the kernel's one trap) as well as polled by any host."""

    __slots__ = ()

    def poll(self, cx: Context, /) -> Poll[T]:
        raise NotImplementedError

    def drop(self) -> None:
        """Called at most once if the future is abandoned before it finished."""

    if TYPE_CHECKING:

        def __await__(self) -> Generator[Any, None, T]: ...

    else:
        # The trap itself, as a method: awaiting a future costs one generator.
        __await__ = _trap


# -- tasks ------------------------------------------------------------------

_SCHEDULED = 0
_RUNNING = 1
_NOTIFIED = 2
_IDLE = 3
_DONE = 4
_STATE_NAMES = ("scheduled", "running", "notified", "idle", "done")


class Task(Waker):
    """One coroutine driven by the kernel; also its own waker.

    Tasks are made by :func:`spawn` (which hands out a :class:`JoinHandle`)
    and seen through :func:`current_task`.
    """

    # No __slots__: the fields that most tasks never change are class-level
    # defaults, so making a task (spawn is hot) sets seven attributes, not
    # fifteen.
    _scopes: list[CancelScope] | None = None
    _aborted = False
    _waiters: dict[object, Waker] | None = None
    _result: Any = None
    _exc: BaseException | None = None
    #: The task's Context, made at its first await of a future.
    _cx: Context | None = None
    # Whether nobody will ever collect the outcome (detached, or its handle
    # was dropped): a failure is then logged when it happens.
    _orphan = False
    _retrieved = False

    name: str

    def __init__(
        self,
        kernel: Kernel,
        coro: Coroutine[Any, Any, Any],
        name: str,
        context: contextvars.Context,
    ) -> None:
        self._kernel = kernel
        self._tid = kernel._tid
        self._coro: Coroutine[Any, Any, Any] | None = coro
        # A step is ``_run(_send, None)``: the coroutine's send, inside the
        # task's own contextvars context.
        self._run = context.run
        self._send: Callable[[Any], object] = coro.send
        self._state = _SCHEDULED
        # Read twice per await: set here, since an attribute of the instance
        # is read faster than a class-level default (CPython 3.11 and 3.12).
        self._cancel_pending = False
        self.name = name

    # -- waker -------------------------------------------------------------

    def wake(self) -> None:
        if _get_ident() == self._tid:
            state = self._state
            if state is _IDLE:
                self._state = _SCHEDULED
                self._kernel._ready.append(self)
            elif state is _RUNNING:
                self._state = _NOTIFIED
        else:
            # Applied on the kernel's thread (a task's state is only changed
            # there); the deque append is atomic.
            kernel = self._kernel
            kernel._remote.append(self)
            sleeping = kernel._sleeping
            if sleeping is not None:
                sleeping()

    def _wake_here(self) -> None:
        state = self._state
        if state is _IDLE:
            self._state = _SCHEDULED
            self._kernel._ready.append(self)
        elif state is _RUNNING:
            self._state = _NOTIFIED

    def will_wake(self, other: Waker) -> bool:
        return self is other

    # -- introspection ------------------------------------------------------

    @property
    def state(self) -> str:
        """``"scheduled"``, ``"running"``, ``"notified"`` (woken while
        running), ``"idle"`` (parked until woken) or ``"done"``."""
        return _STATE_NAMES[self._state]

    def done(self) -> bool:
        return self._state is _DONE

    def cancelled(self) -> bool:
        """Whether the task finished by cancellation."""
        return self._state is _DONE and isinstance(self._exc, Cancelled)

    def __repr__(self) -> str:
        return f"<pet_executor.Task {self.name!r} {self.state}>"

    # -- cancellation (kernel thread) --------------------------------------

    def _update_cancel(self) -> None:
        pending = self._aborted
        scopes = self._scopes
        if scopes:
            for scope in reversed(scopes):
                if scope._cancel_called:
                    pending = True
                    break
                if scope._shield:
                    pending = False
                    break
        self._cancel_pending = pending
        if pending:
            self._wake_here()

    def _abort(self) -> None:
        if self._state is _DONE or self._aborted:
            return
        self._aborted = True
        coro = self._coro
        if self._state is _SCHEDULED and coro is not None and _not_started(coro):
            # Dropped before its first poll: none of its code runs.
            self._send = partial(_cancel_unstarted, coro)
            self._cancel_pending = True
            return
        self._update_cancel()

    def _request_abort(self) -> None:
        """``_abort`` from any thread."""
        if self._state is _DONE:
            return
        if _get_ident() == self._tid:
            self._abort()
        else:
            self._kernel._call_internal_threadsafe(Task._abort, self)

    # -- outcome --------------------------------------------------------------

    def _outcome(self) -> Poll[Any]:
        self._retrieved = True
        exc = self._exc
        if exc is None:
            return Poll(self._result)
        if isinstance(exc, Cancelled):
            raise Cancelled(f"task {self.name!r} was aborted")
        raise exc


def _not_started(coro: object) -> bool:
    if isinstance(coro, types.CoroutineType):
        return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
    if isinstance(coro, types.GeneratorType):
        return inspect.getgeneratorstate(coro) == inspect.GEN_CREATED
    return False


def _cancel_unstarted(coro: Coroutine[Any, Any, Any], _: object) -> NoReturn:
    coro.close()
    raise Cancelled


def _poll_join(key: object, task: Task, cx: Context) -> Poll[Any]:
    if task._state is _DONE:
        return task._outcome()
    waiters = task._waiters
    if waiters is None:
        waiters = task._waiters = {}
    waiters[key] = cx.waker
    # Re-check: the task may have finished, on another thread, between the
    # first check and the registration (it sets DONE before it takes the
    # waiters, so one of the two sides sees the other).
    if task._state is _DONE:
        waiters.pop(key, None)
        return task._outcome()
    return _PENDING


def _drop_join(key: object, task: Task) -> None:
    waiters = task._waiters
    if waiters is not None:
        waiters.pop(key, None)


class _JoinWait(FutureBase[T]):
    """One ``await handle``: a waiter of its own, so several tasks may await
    the same handle. It keeps the handle alive while it waits, so that
    ``await spawn(f)`` does not drop (and so abort) the task it awaits."""

    __slots__ = ("_handle", "_task")

    def __init__(self, handle: JoinHandle[T]) -> None:
        self._handle = handle
        self._task = handle._task

    def poll(self, cx: Context, /) -> Poll[T]:
        return _poll_join(self, self._task, cx)

    def drop(self) -> None:
        _drop_join(self, self._task)


class JoinHandle(FutureBase[T]):
    """The owner's handle on a spawned task.

    - ``await handle`` gives the task's result, re-raises its exception, or
      raises :class:`Cancelled` if it was aborted. Any number of tasks may
      await it, any number of times.
    - ``abort()`` cancels the task: it stops at its current await (or never
      starts), its ``finally`` blocks run once, then it is done.
    - ``detach()`` lets the task run on its own; a failure is then logged
      (logger ``"pet_executor"``) since nobody will await it.
    - Dropping the handle (its last reference goes away) without awaiting or
      detaching it aborts the task, as dropping a future does in Rust: a task
      nobody will ever look at should not keep running unseen. A failure it
      had or has later is logged. Dropping it before the task even started
      (``pet_executor.spawn(f)`` as a statement) also warns (RuntimeWarning):
      that is almost always a forgotten ``.detach()``.

    A handle is also a :class:`Future`: hosts can poll it directly.
    """

    __slots__ = ("__weakref__", "_detached", "_task")

    def __init__(self, task: Task) -> None:
        self._task = task
        self._detached = False

    @property
    def task(self) -> Task:
        return self._task

    @property
    def name(self) -> str:
        return self._task.name

    def done(self) -> bool:
        return self._task._state is _DONE

    def abort(self) -> None:
        """Cancel the task (from any thread); no effect once it is done."""
        self._task._request_abort()

    def detach(self) -> None:
        """Let the task run to its end unobserved; dropping the handle will no
        longer abort it."""
        self._detached = True
        task = self._task
        task._orphan = True
        if task._state is _DONE and not task._retrieved:
            _report_orphan(task)

    def poll(self, cx: Context, /) -> Poll[T]:
        return _poll_join(self, self._task, cx)

    def drop(self) -> None:
        _drop_join(self, self._task)

    def __await__(self) -> Generator[Any, None, T]:
        return _trap(_JoinWait(self))

    def __del__(self) -> None:
        if self._detached:
            return
        task = self._task
        task._orphan = True
        if task._state is _DONE:
            if not task._retrieved:
                _report_orphan(task)
            return
        if not task._aborted and task._coro is not None and _not_started(task._coro):
            # Python has no #[must_use]: say it, since the task will never run.
            warnings.warn(
                f"the JoinHandle of task {task.name!r} was dropped before the task started, "
                "so the task was cancelled and none of it ran. Keep the handle and await it, "
                "or call .detach() to let the task run on its own: "
                "pet_executor.spawn(fn).detach()",
                RuntimeWarning,
                stacklevel=2,
            )
        task._request_abort()

    def __repr__(self) -> str:
        return f"<pet_executor.JoinHandle of {self._task!r}>"


def _report_orphan(task: Task) -> None:
    exc = task._exc
    if isinstance(exc, Exception):
        task._retrieved = True
        _log.error("task %r failed and nobody awaited it", task.name, exc_info=exc)


# -- cancel scopes ------------------------------------------------------------


class CancelScope:
    """A region of one task that can be cancelled as a unit (trio's model).

    ``with CancelScope(deadline=..., shield=...) as scope:``. ``cancel()``
    (from any thread) or the deadline makes every await inside raise
    :class:`Cancelled`; the scope swallows that exception when it reaches
    the ``with``'s end and sets ``cancelled_caught``. A shield scope keeps
    cancellations from outside it out (an abort of the task included) until
    it exits. See :func:`shield` and :func:`~pet_executor.timeout`.
    """

    __slots__ = (
        "_cancel_called",
        "_deadline",
        "_exited",
        "_relative",
        "_shield",
        "_task",
        "_timeout",
        "_timer",
        "cancelled_caught",
    )

    def __init__(self, *, deadline: float = _INF, shield: bool = False) -> None:
        self._deadline = deadline
        self._relative: float | None = None
        self._shield = shield
        self._cancel_called = False
        self._task: Task | None = None
        self._timer: Timer | None = None
        self._timeout = False
        self._exited = False
        #: Whether the scope swallowed the cancellation it caused.
        self.cancelled_caught = False

    @classmethod
    def _failing(cls, *, after: float | None = None, at: float = _INF) -> CancelScope:
        # timeout() and timeout_at(): a scope that raises TimeoutError when
        # its deadline (counted from when it is entered, for ``after``) cancels it.
        scope = cls(deadline=at)
        scope._relative = after
        scope._timeout = True
        return scope

    @property
    def deadline(self) -> float:
        return self._deadline

    @property
    def shield(self) -> bool:
        return self._shield

    @property
    def cancel_called(self) -> bool:
        return self._cancel_called

    def cancel(self) -> None:
        """Cancel the work inside the scope; idempotent; from any thread."""
        if self._cancel_called:
            return
        task = self._task
        if task is None or _get_ident() == task._tid:
            self._cancel_here()
        else:
            task._kernel._call_internal_threadsafe(CancelScope._cancel_here, self)

    def _cancel_here(self) -> None:
        if self._cancel_called:
            return
        self._cancel_called = True
        task = self._task
        if task is not None and not self._exited:
            task._update_cancel()

    def _expire(self) -> None:
        self._timer = None
        self._cancel_here()

    def __enter__(self) -> CancelScope:
        task = _current()
        if task is None:
            raise NoRuntimeError(
                "a cancel scope (shield, timeout) was entered outside a pet_executor task.",
                fixes=(
                    Fix(
                        "with pet_executor.timeout(5): ...  # in sync code",
                        "inside an async function run by pet_executor",
                    ),
                ),
            )
        if self._task is not None:
            raise RuntimeError("a cancel scope can be entered only once; make a new one")
        kernel = task._kernel
        self._task = task
        if self._relative is not None:
            self._deadline = kernel._now() + self._relative
        scopes = task._scopes
        if scopes is None:
            scopes = task._scopes = []
        scopes.append(self)
        if self._deadline != _INF:
            if self._deadline <= kernel._now():
                self._cancel_called = True
            else:
                self._timer = kernel._call_at(self._deadline, self._expire)
        if self._cancel_called or self._shield:
            task._update_cancel()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> bool:
        task = self._task
        assert task is not None, "exited a cancel scope that was never entered"
        if self._timer is not None:
            task._kernel._cancel_timer(self._timer)
            self._timer = None
        scopes = task._scopes
        if _current() is not task or not scopes or scopes[-1] is not self:
            raise RuntimeError(
                "cancel scopes must be exited in the task that entered them, innermost first "
                "(a scope cannot span a yield of an async generator that moves between tasks)"
            )
        scopes.pop()
        self._exited = True
        task._update_cancel()
        if isinstance(exc, Cancelled) and self._cancel_called and not task._cancel_pending:
            self.cancelled_caught = True
            if self._timeout:
                if self._relative is not None:
                    raise TimeoutError(f"timed out after {self._relative} s")
                raise TimeoutError(f"deadline {self._deadline} passed")
            return True
        return False

    def __repr__(self) -> str:
        flags = [f"deadline={self._deadline}"] if self._deadline != _INF else []
        if self._shield:
            flags.append("shield")
        if self._cancel_called:
            flags.append("cancelled")
        return f"<CancelScope {' '.join(flags)}>".replace(" >", ">")


def shield() -> CancelScope:
    """``with shield():`` protects the work inside from cancellation coming
    from outside (an abort, an enclosing timeout) until the block ends; the
    cancellation then takes effect at the next await."""
    return CancelScope(shield=True)


# -- timers -------------------------------------------------------------------


class Timer:
    """A callback the kernel calls at ``deadline`` (see ``Kernel.call_at``)."""

    __slots__ = ("_kernel", "deadline", "fn")

    def __init__(self, kernel: Kernel, deadline: float, fn: Callable[[], object] | None) -> None:
        self._kernel = kernel
        self.deadline = deadline
        #: None once fired or cancelled.
        self.fn = fn

    def cancel(self) -> None:
        """Do not call it (kernel thread; no effect once fired)."""
        self._kernel._cancel_timer(self)

    def __repr__(self) -> str:
        return f"<Timer at {self.deadline} {'pending' if self.fn is not None else 'done'}>"


# -- the token ----------------------------------------------------------------


class KernelToken(Token):
    """Schedules sync callbacks onto one pet_executor kernel from any thread."""

    __slots__ = ("_kernel",)
    runtime = "pet_executor"

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    @property
    def native(self) -> Kernel:
        return self._kernel

    @property
    def thread_ident(self) -> int:
        """The thread the kernel belongs to (known from its creation)."""
        return self._kernel._tid

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        self._kernel.call_soon_threadsafe(fn, *args)


# -- the kernel -----------------------------------------------------------------


class Kernel:
    """One run of pet_executor, bound to the thread that creates it.

    :func:`run` makes one and drives it to the end. Used directly (the
    low-level API), a kernel can also be stepped: ``spawn`` tasks onto it
    and call :meth:`run_until_stalled` from its thread, then :meth:`close`.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        task_wrapper: Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        self._tid = _get_ident()
        # Applied to every task's coroutine at spawn (asyncio's task factory,
        # curio's task class): how the bridge gives each task a portal.
        self._task_wrapper = task_wrapper
        self._clock = clock if clock is not None else MonotonicClock()
        self._now = self._clock.current_time
        self._ready: deque[Task] = deque()
        self._tasks: set[Task] = set()
        # Handed over by other threads, applied on this one: a task to wake,
        # or a callback (fn, args).
        self._remote: deque[Task | tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._remote_lock = threading.Lock()
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        self._cancelled_timers = 0
        self._reactor: Reactor | None = None
        self._wakeup_queue: SimpleQueue[None] = SimpleQueue()
        self._wakeup_thread = partial(self._wakeup_queue.put, None)
        # While idle: how another thread wakes the kernel (else None).
        self._sleeping: Callable[[], None] | None = None
        self._stop = False
        #: The task being stepped now (None between steps and in callbacks).
        self._current: Task | None = None
        self._watch: Task | None = None
        self._crash: BaseException | None = None
        self._closing = False
        self._closed = False
        self._paused = False
        # Weak: the set must not keep an abandoned generator alive, or it
        # would never be finalized.
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self.token = KernelToken(self)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def closing(self) -> bool:
        """Whether the kernel is shutting down (aborting what is left) or closed."""
        return self._closing or self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<pet_executor.Kernel {state}, {len(self._tasks)} tasks>"

    # -- public, low level ------------------------------------------------------

    def spawn(
        self,
        async_fn: Any,
        *args: Any,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> JoinHandle[Any]:
        """Spawn onto this kernel from its thread (inside a run or not).
        ``context``: the ``contextvars.Context`` every step of the task runs
        in (default: a copy of the current one)."""
        self._check_thread("spawn onto")
        coro, default_name = _coroutine_from(async_fn, args, "spawn")
        return JoinHandle(self._spawn_task(coro, name or default_name, context))

    def now(self) -> float:
        """The time on this kernel's clock."""
        return self._now()

    def call_at(self, deadline: float, fn: Callable[[], object]) -> Timer:
        """Call ``fn()`` on the kernel's thread, outside any task, once the
        clock reaches ``deadline``; kernel thread only."""
        self._check_thread("set a timer on")
        return self._call_at(deadline, fn)

    def run_forever(self) -> None:
        """Drive the kernel on this thread until :meth:`stop` is called (by a
        task, a callback or a timer of this kernel). Tasks still pending stay
        pending; drive again, or :meth:`close`."""
        self._check_thread("run")
        if self._closed or self._closing:
            raise RuntimeError(f"{self!r} is closed")
        with self._entered():
            self._stop = False
            self._watch = None
            self._loop(block=True)
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current batch; kernel
        thread only (from another thread, schedule it through the token)."""
        self._check_thread("stop")
        self._stop = True

    def set_paused(self, paused: bool) -> None:
        """While paused, the token refuses callbacks with
        :class:`~bridge.RunFinishedError` (a runner between two calls: work
        queued then would wait for a drive that may never come)."""
        with self._remote_lock:
            self._paused = paused

    def call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` soon on the kernel's thread, outside any task.

        Raises :class:`~bridge.RunFinishedError` once the kernel is closed.
        An exception ``fn`` raises is logged (logger ``"pet_executor"``).
        """
        with self._remote_lock:
            if self._closed or self._paused:
                state = "has finished" if self._closed else "is paused between two calls"
                raise RunFinishedError(
                    f"the pet_executor run {self!r} {state}; the callback {fn!r} would never run."
                )
            self._remote.append((fn, args))
        sleeping = self._sleeping
        if sleeping is not None:
            sleeping()

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, name: str | None = None) -> T:
        """Run ``async_fn(*args)`` as the main task until it is done, then
        cancel the tasks left and wait for their cleanup; return its result."""
        self._check_thread("run")
        if self._closed or self._closing:
            raise RuntimeError(f"{self!r} was already run or closed; make a new Kernel")
        coro, default_name = _coroutine_from(async_fn, args, "run")
        with self._entered():
            try:
                main = self._spawn_task(coro, name or default_name)
                self._watch = main
                self._stop = False
                self._loop(block=True)
            finally:
                self._shutdown()
        if self._crash is not None:
            raise self._crash
        result: T = main._outcome().value
        return result

    def run_until_stalled(self) -> None:
        """Run tasks, callbacks and due timers until nothing is ready; never
        blocks (sockets are polled without waiting)."""
        self._check_thread("step")
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        with self._entered():
            self._stop = False
            self._watch = None
            self._loop(block=False)
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash

    def close(self) -> None:
        """Abort every task, run their cleanup to the end, and close."""
        self._check_thread("close")
        if self._closed:
            return
        with self._entered():
            self._shutdown()

    # -- internals --------------------------------------------------------------

    def _check_thread(self, what: str) -> None:
        if _get_ident() != self._tid:
            raise RuntimeError(
                f"cannot {what} {self!r} from a thread other than the one that created it"
            )

    def _entered(self) -> _Entered:
        return _Entered(self)

    def _spawn_task(
        self, coro: Coroutine[Any, Any, Any], name: str, context: contextvars.Context | None = None
    ) -> Task:
        if self._task_wrapper is not None:
            coro = self._task_wrapper(coro)
        task = Task(self, coro, name, contextvars.copy_context() if context is None else context)
        self._tasks.add(task)
        self._ready.append(task)
        if self._closing:
            task._abort()
        return task

    def _call_internal_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        # For wakes and aborts from other threads: no refusal after close,
        # since a closed kernel has no task left to wake.
        self._remote.append((fn, args))
        sleeping = self._sleeping
        if sleeping is not None:
            sleeping()

    def _call_at(self, deadline: float, fn: Callable[[], object]) -> Timer:
        timer = Timer(self, deadline, fn)
        heapq.heappush(self._timers, (deadline, next(self._timer_seq), timer))
        return timer

    def _cancel_timer(self, timer: Timer) -> None:
        if timer.fn is None:
            return
        timer.fn = None
        self._cancelled_timers += 1
        timers = self._timers
        # Lazy deletion, with a sweep once most of the heap is dead (a
        # program that sets many long timeouts and finishes early).
        if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(timers):
            timers[:] = [entry for entry in timers if entry[2].fn is not None]
            heapq.heapify(timers)
            self._cancelled_timers = 0

    def _reactor_or_new(self) -> Reactor:
        reactor = self._reactor
        if reactor is None:
            reactor = self._reactor = Reactor()
        return reactor

    def _loop(self, *, block: bool) -> None:
        # The hot path: everything used per step is a local.
        ready = self._ready
        popleft = ready.popleft
        append = ready.append
        remote = self._remote
        timers = self._timers
        finish = self._finish
        park = _PARK
        yield_ = _YIELD
        running = _RUNNING
        notified = _NOTIFIED
        scheduled = _SCHEDULED
        idle = _IDLE
        wakeup_thread = self._wakeup_thread
        wait_for_wakeup: Callable[[], object] = self._wakeup_queue.get
        if _on_main_thread():
            wait_for_wakeup = partial(_wait_in_slices, self._queue_wait, None)
        yield_cpu = _sched_yield
        skip_yields = 0  # idles left that block at once, after yields in vain
        backoff = 1
        # ``while True``, not ``while not self._stop``: on CPython 3.11 only an
        # unconditional jump back lets a running loop be specialized.
        while True:
            # Read through a local, or a type checker takes the test as
            # holding for the rest of the pass (the tasks may set it).
            stopping: bool = self._stop
            if stopping:
                return
            if ready:
                n = len(ready)  # this batch: what it wakes runs in the next one
                while n:
                    n -= 1
                    task = popleft()
                    self._current = task
                    task._state = running
                    try:
                        op = task._run(task._send, None)
                    except StopIteration as stop:
                        finish(task, stop.value, None)
                        continue
                    except BaseException as exc:
                        finish(task, None, exc)
                        continue
                    if op is park:
                        if task._state is notified:
                            task._state = scheduled
                            append(task)
                        else:
                            task._state = idle
                    elif op is yield_:
                        task._state = scheduled
                        append(task)
                    else:
                        self._foreign_yield(task, op)
                self._current = None
            # Between two batches; loops only after the common idle below,
            # whose wake-up needs no batch first (nothing ran meanwhile).
            while True:
                while remote:
                    item = remote.popleft()
                    if item.__class__ is Task:
                        # A wake from another thread (Task._wake_here, inlined).
                        state = item._state
                        if state is idle:
                            item._state = scheduled
                            append(item)
                        elif state is running:
                            item._state = notified
                    else:
                        self._run_callback(item)  # type: ignore[arg-type]
                if timers:
                    self._fire_timers()
                reactor = self._reactor
                if ready:
                    if reactor is not None and reactor.count:
                        reactor.poll(0)  # sockets get their turn between batches
                    break
                if not block:
                    if reactor is not None and reactor.count and reactor.poll(0):
                        break
                    if remote or ready:
                        break
                    return
                if timers or (reactor is not None and reactor.count):
                    self._idle()
                    break
                # The common idle, inlined: nothing but another thread can
                # wake us (unless a task of the last batch asked to stop).
                if self._stop:
                    return
                if not remote:
                    if yield_cpu is not None:
                        if skip_yields:
                            skip_yields -= 1
                        else:
                            # Give the CPU and the GIL away once first: a
                            # thread about to wake us (often it waits for the
                            # GIL right now) then just appends to _remote,
                            # found on our return, instead of waking us through
                            # the queue (its put, our wake-up, our wait for the
                            # GIL it holds: two more thread switches).
                            yield_cpu()
                            if remote:
                                backoff = 1
                                continue
                            # Nothing came: yield less often while that lasts.
                            skip_yields = backoff
                            backoff = min(2 * backoff, 64)
                    # Block on the queue until a wake comes.
                    self._sleeping = wakeup_thread
                    if not remote:
                        wait_for_wakeup()
                    self._sleeping = None

    def _foreign_yield(self, task: Task, op: object) -> None:
        # The task awaited something of another runtime (an asyncio future
        # yields itself, trio and curio yield their trap messages): throw the
        # error in at that await, and handle whatever the task does next.
        module = type(op).__module__.partition(".")[0].lstrip("_")  # _asyncio: the C Future
        runtime = module if module in ("asyncio", "trio", "curio") else "another runtime"
        error = WrongRuntimeError(
            f"a pet_executor task ({task.name!r}) awaited an object of {runtime} "
            f"(it yielded {op!r} to the scheduler); pet_executor cannot drive it.",
            fixes=(
                Fix(
                    "await asyncio.sleep(1)  # in a pet_executor task",
                    "await pet_executor.sleep(1)",
                ),
            ),
        )
        coro = task._coro
        assert coro is not None
        try:
            op = task._run(coro.throw, error)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
            return
        except BaseException as exc:
            self._finish(task, None, exc)
            return
        if op is _PARK:
            if task._state is _NOTIFIED:
                task._state = _SCHEDULED
                self._ready.append(task)
            else:
                task._state = _IDLE
        elif op is _YIELD:
            task._state = _SCHEDULED
            self._ready.append(task)
        else:
            self._foreign_yield(task, op)

    def _finish(self, task: Task, value: object, exc: BaseException | None) -> None:
        task._state = _DONE
        del task._send  # the bound send keeps the finished coroutine alive
        task._cx = None  # breaks the task -> context -> task cycle
        task._coro = None
        self._tasks.discard(task)
        if exc is None:
            task._result = value
        else:
            task._exc = exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                # Not a task's failure but the program's: end the run with it.
                if self._crash is None:
                    self._crash = exc
                self._stop = True
            elif isinstance(exc, Cancelled):
                # Nobody re-raises this one (awaiting the handle raises a new
                # Cancelled); dropping its traceback frees the task's frame
                # now, and with it the handles of the children it spawned,
                # which are then aborted too.
                exc.__traceback__ = None
            elif task._orphan:
                _report_orphan(task)
        waiters = task._waiters
        if waiters:
            task._waiters = None
            for waker in tuple(waiters.values()):
                waker.wake()
        if task is self._watch or (self._watch is None and not self._tasks and self._closing):
            self._stop = True

    def _drain_remote(self) -> None:
        remote = self._remote
        while remote:
            item = remote.popleft()
            if item.__class__ is Task:
                item._wake_here()
            else:
                self._run_callback(item)  # type: ignore[arg-type]

    def _run_callback(self, item: tuple[Callable[..., object], tuple[Any, ...]]) -> None:
        fn, args = item
        try:
            fn(*args)
        except (KeyboardInterrupt, SystemExit) as exc:
            if self._crash is None:
                self._crash = exc
            self._stop = True
        except BaseException:
            _log.exception("callback %r scheduled on pet_executor failed", fn)

    def _fire_timers(self) -> None:
        timers = self._timers
        now = self._now()
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            fn = timer.fn
            if fn is None:
                self._cancelled_timers -= 1
                continue
            timer.fn = None
            try:
                fn()
            except BaseException:
                _log.exception("timer callback %r failed", fn)

    def _idle(self) -> None:
        if self._stop:
            return
        timers = self._timers
        timeout: float | None = None
        if timers:
            timeout = self._clock.deadline_to_sleep_time(timers[0][0])
            if timeout == _INF:
                timeout = None
            elif timeout < 0:
                timeout = 0.0
        reactor = self._reactor
        if reactor is not None and reactor.count:
            self._sleeping = reactor.wakeup
            if self._remote:
                timeout = 0.0
            wait: Callable[[float | None], bool] = reactor.poll
        else:
            self._sleeping = self._wakeup_thread
            wait = self._queue_wait
        if self._remote and wait is self._queue_wait:
            happened = True
        elif timeout != 0.0 and _on_main_thread():
            happened = _wait_in_slices(wait, timeout)
        else:
            happened = wait(timeout)
        self._sleeping = None
        if not happened and timers and not self._remote:
            self._clock.idle_expired(timers[0][0])

    def _queue_wait(self, timeout: float | None) -> bool:
        try:
            self._wakeup_queue.get(True, timeout)
        except Empty:
            return False
        return True

    def _shutdown(self) -> None:
        """Abort what is left, run its cleanup, finalize async generators,
        refuse new callbacks, run those accepted before, and close."""
        self._closing = True
        self._watch = None
        self._requeue()
        try:
            for _ in range(2):
                self._run_down()
                if self._asyncgens:
                    for agen in list(self._asyncgens):
                        self._spawn_task(agen.aclose(), f"aclose of {agen!r}")
                    self._asyncgens.clear()
                    self._run_down()
                with self._remote_lock:
                    self._closed = True
                self._stop = False
                self._drain_remote()  # callbacks accepted before the close run once
                if not self._tasks:
                    break
        finally:
            self._closed = True
            for task in list(self._tasks):  # only after an internal error
                if task._coro is not None:
                    task._coro.close()
                self._finish(task, None, Cancelled("the kernel closed"))
            self._ready.clear()
            if self._reactor is not None:
                self._reactor.close()
                self._reactor = None

    def _requeue(self) -> None:
        # An exception from outside any task (Ctrl-C landing in the loop's own
        # code) may have left a task between the ready queue and its step:
        # make every task that is not parked runnable, exactly once.
        queued = set(self._ready)
        for task in self._tasks:
            if task._state is not _IDLE and task._state is not _DONE:
                task._state = _SCHEDULED
                if task not in queued:
                    self._ready.append(task)

    def _run_down(self) -> None:
        while self._tasks:
            for task in list(self._tasks):
                task._abort()
            self._stop = False
            self._loop(block=True)

    # asyncgen hooks: an async generator abandoned in a task is closed in a
    # task of its own (its finally blocks may await), not at garbage
    # collection in whatever frame that happens to be.
    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._asyncgens.add(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if self._closed:
            return
        if _get_ident() == self._tid:
            self._spawn_task(agen.aclose(), f"aclose of {agen!r}")
        else:
            self._call_internal_threadsafe(self._asyncgen_finalizer, agen)


class _Entered:
    """Makes ``kernel`` this thread's running kernel for the duration."""

    __slots__ = ("_hooks", "_kernel", "_sniffio")

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def __enter__(self) -> None:
        kernel = self._kernel
        outer = RUN.kernel
        if outer is not None:
            raise _nested_error("pet_executor", in_task=outer._current is not None)
        RUN.kernel = kernel
        kernel._current = None
        import sniffio

        self._sniffio = sniffio.thread_local.name
        sniffio.thread_local.name = "pet_executor"
        self._hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=kernel._asyncgen_firstiter, finalizer=kernel._asyncgen_finalizer
        )
        if isinstance(kernel._clock, MockClock):
            kernel._clock._wakeup = partial(kernel._call_internal_threadsafe, _noop)

    def __exit__(self, *exc_info: object) -> None:
        kernel = self._kernel
        import sniffio

        sniffio.thread_local.name = self._sniffio
        sys.set_asyncgen_hooks(*self._hooks)
        if isinstance(kernel._clock, MockClock):
            kernel._clock._wakeup = None
        RUN.kernel = None
        kernel._current = None


def _noop() -> None:
    pass


def _nested_error(outer: str, *, in_task: bool) -> NestedRuntimeError:
    where = "inside a task" if in_task else "in a callback"
    if outer == "pet_executor":
        fixes = (
            Fix("pet_executor.run(work)  # inside a pet_executor task", "await work()"),
            Fix("pet_executor.run(work)  # inside a pet_executor task", "pet_executor.spawn(work)"),
        )
    else:
        fixes = (
            Fix(
                f"pet_executor.run(work)  # inside {outer}",
                'await adapters.call("pet_executor", work)',
            ),
            Fix(
                f"pet_executor.run(work)  # inside {outer}",
                "await bridge.spawn_blocking(pet_executor.run, work)  # a run on a worker thread",
            ),
        )
    return NestedRuntimeError(
        f"pet_executor.run() was called on a thread that is already running {outer}'s "
        f"scheduler ({where}).",
        fixes=fixes,
    )


# -- entry points -------------------------------------------------------------


def _name_of(obj: object) -> str:
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else type(obj).__name__


async def _drive(awaitable: Any) -> Any:
    # A Future that is not awaitable itself (poll only) goes through the trap.
    if not hasattr(awaitable, "__await__") and hasattr(awaitable, "poll"):
        return await _trap_await(awaitable)
    return await awaitable


def _coroutine_from(
    fn: Any, args: tuple[Any, ...], what: str
) -> tuple[Coroutine[Any, Any, Any], str]:
    """The coroutine to run for ``what(fn, *args)``, and a name for its task."""
    if isinstance(fn, types.CoroutineType):
        if what == "run":
            fn.close()  # never awaited: no "never awaited" warning on top of ours
            raise TypeError(
                f"pet_executor.run() expects an async function and its arguments, but got a "
                f"coroutine object {fn!r}. Probably you did "
                f"`pet_executor.run({fn.__name__}(...))`; you want "
                f"`pet_executor.run({fn.__name__}, ...)`."
            )
        if args:
            raise TypeError(
                f"{what}() got a coroutine object and arguments; pass `{what}(async_fn, *args)`"
            )
        return fn, fn.__qualname__
    if callable(fn) and not hasattr(fn, "poll"):
        result = fn(*args)
        if isinstance(result, types.CoroutineType):
            return result, result.__qualname__
        if hasattr(result, "__await__") or hasattr(result, "poll"):
            return _drive(result), _name_of(fn)
        raise TypeError(
            f"{what}() expects an async function, but {fn!r} returned {result!r}, which is not "
            f"awaitable. Probably {_name_of(fn)} is a sync function; call it directly, or make it "
            f"`async def`."
        )
    if what != "run" and (hasattr(fn, "__await__") or hasattr(fn, "poll")):
        if args:
            raise TypeError(
                f"{what}() got an awaitable and arguments; pass `{what}(async_fn, *args)`"
            )
        return _drive(fn), _name_of(fn)
    raise TypeError(f"{what}() expects an async function, not {fn!r}")


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    clock: Clock | None = None,
    task_wrapper: Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]] | None = None,
) -> T:
    """Run ``async_fn(*args)`` on a new kernel on this thread and return its result.

    When it returns, the tasks it left running are aborted and their cleanup
    runs to the end before ``run`` returns. ``clock``: e.g.
    ``MockClock(autojump=True)`` for tests. ``task_wrapper``: applied to every
    task's coroutine (the bridge's portals). On a thread that already runs a
    scheduler (any runtime's) it raises :class:`~bridge.NestedRuntimeError`.
    """
    outer = RUN.kernel
    if outer is not None:
        raise _nested_error("pet_executor", in_task=outer._current is not None)
    from bridge._context import current_context

    ctx = current_context()
    if ctx.role == "event_loop" and ctx.runtime is not None:
        raise _nested_error(ctx.runtime, in_task=ctx.in_task)
    return Kernel(clock=clock, task_wrapper=task_wrapper).run(async_fn, *args)


@overload
def spawn(
    async_fn: Callable[..., Awaitable[T]], *args: Any, name: str | None = None
) -> JoinHandle[T]: ...
@overload
def spawn(async_fn: Awaitable[T] | Future[T], *, name: str | None = None) -> JoinHandle[T]: ...
def spawn(async_fn: Any, *args: Any, name: str | None = None) -> JoinHandle[Any]:
    """Start ``async_fn(*args)`` as a new task on the current run; it starts
    at the next scheduler turn. Also accepts a coroutine or a future.

    Returns its :class:`JoinHandle`; dropping the handle aborts the task
    (call ``detach()`` to let it run on its own).
    """
    kernel = RUN.kernel
    if kernel is None:
        raise NoRuntimeError(
            "pet_executor.spawn() was called outside a pet_executor run.",
            fixes=(
                Fix("pet_executor.spawn(work)  # in sync code", "pet_executor.run(work)"),
                Fix(
                    "pet_executor.spawn(work)  # on another thread",
                    "token.run_sync_soon_threadsafe(pet_executor.spawn, work)",
                ),
            ),
        )
    coro, default_name = _coroutine_from(async_fn, args, "spawn")
    return JoinHandle(kernel._spawn_task(coro, name or default_name))


def current_task() -> Task:
    """The task running now; raises outside a pet_executor task."""
    task = _current()
    if task is None:
        raise NoRuntimeError(
            "pet_executor.current_task() was called outside a pet_executor task.",
            fixes=(
                Fix(
                    "pet_executor.current_task()  # in sync code",
                    "pet_executor.lowlevel.current_task_or_none()",
                ),
            ),
        )
    return task


def current_task_or_none() -> Task | None:
    """The task running now on this thread, or None (cheap)."""
    return _current()


def current_kernel() -> Kernel | None:
    """The kernel running on this thread, or None (cheap)."""
    return RUN.kernel


def checkpoint() -> Awaitable[None]:
    """A cancel point and a turn for the other ready tasks (``sleep(0)``)."""
    return _trap_await(None)


def _kernel_or_raise(what: str) -> Kernel:
    kernel = RUN.kernel
    if kernel is None:
        raise NoRuntimeError(
            f"{what} needs a running pet_executor kernel on this thread.",
            fixes=(
                Fix(f"{what}  # in sync code", "inside an async function run by pet_executor.run"),
            ),
        )
    return kernel
