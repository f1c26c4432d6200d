"""Work items: what block_on, pets and cross-runtime calls hand to a run.

Theory of operation. A caller on one thread wants ``async_fn(*args)`` to run
as a task of a run that another thread drives (or that this thread will
drive). The outcome travels back in a :class:`WorkFuture`, a
``concurrent.futures.Future`` whose ``cancel()`` is a *request*:

- submitted, not started: ``cancel()`` cancels at once (the task never starts);
- running: ``cancel()`` asks the run (through its token) to cancel the task;
  the future becomes cancelled only when the task has finished cancelling,
  so its cleanup has run by the time a waiter wakes;
- a task that ends cancelled although nobody asked (the runtime cancelled it
  on its own side) ends with :class:`~bridge.GuestCancelledError`, never with
  a cancellation the caller would mistake for its own.

Adapters start the task (``RuntimeAdapter.spawn_work``) and report its end
through ``deliver_value`` / ``deliver_error`` / ``deliver_cancelled``, on the
run's thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from _thread import RLock as _RLock
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
    InvalidStateError,
)
from concurrent.futures._base import LOGGER as _LOGGER
from inspect import CO_COROUTINE
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, TypeVar

from ._context import RUNS_ENDING
from ._deadlock import CURRENT_WORK, graph
from ._errors import Fix, GuestCancelledError, RunFinishedError
from ._foreign import as_delivered

if TYPE_CHECKING:
    from ._context import Token
    from ._registry import RuntimeAdapter

T = TypeVar("T")

__all__ = (
    "IDLE_WORK_TASKS",
    "InContext",
    "WorkFuture",
    "WorkItem",
    "as_async_callable",
    "await_work",
    "bind_work",
    "copy_back",
    "describe",
)


class WorkFuture(Future[T]):
    """The outcome of one piece of work running as a task of some run.

    ``cancel()`` requests cancellation of the task; the future ends cancelled
    only after the task's cleanup ran.

    Built for the hot path. ``Future``'s condition is made only when something
    asks for it (``concurrent.futures.wait``, ``as_completed``, ``Future``'s
    own ``exception()``...): this class's own methods take the condition's
    lock (``_mutex``) directly, and a blocking ``result()`` waits on a lock of
    its own that every way of ending releases, together with the condition's
    waiters, if any. The state, outcome and waiter fields are ``Future``'s own,
    so everything written for ``concurrent.futures`` keeps working. Every
    field, ``Future``'s included, is a slot: no instance dict is ever made.
    """

    __slots__ = (
        "_blocked",
        "_cancel_requested",
        "_canceller",
        "_close_error",
        "_cond",
        "_done_callbacks",
        "_exception",
        "_mutex",
        "_pending_in",
        "_result",
        "_state",
        "_token",
        "_waiters",
        "label",
        "runtime",
        "thread_ident",
    )

    def __init__(self, label: str = "work") -> None:
        # Future.__init__, less the condition (see ``_condition``).
        self._cond: threading.Condition | None = None
        self._mutex = _RLock()
        self._state = PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[T]], object]] = []
        #: Locks of threads blocked in result(), released when it is done.
        self._blocked: list[Any] = []
        self.label = label
        self._token: Token | None = None
        self._canceller: Callable[[], object] | None = None
        self._cancel_requested = False
        self._close_error: BaseException | None = None
        #: A set this future leaves once done (a pet's pending calls).
        self._pending_in: set[WorkFuture[Any]] | None = None
        #: The thread that runs the work (a loop's, or a worker's): set at start.
        self.thread_ident: int | None = None
        #: The runtime that runs the work, when it is async work.
        self.runtime: str | None = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """``Future``'s condition, made on first use around ``_mutex`` (one
        per future even when threads race to make it)."""
        condition = self._cond
        if condition is None:
            with self._mutex:
                condition = self._cond
                if condition is None:
                    condition = self._cond = threading.Condition(self._mutex)
        return condition

    def done(self) -> bool:
        return self._state in _OVER

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        with self._mutex:
            if self._state not in _OVER:
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            _LOGGER.exception("exception calling callback for %r", self)

    def set_running_or_notify_cancel(self) -> bool:
        with self._mutex:
            if self._state in (PENDING, CANCELLED):
                return self.claim()
        return super().set_running_or_notify_cancel()  # raises, as Future's does

    # -- the caller's side -----------------------------------------------

    def cancel(self) -> bool:
        with self._mutex:
            state = self._state
            if state == PENDING:
                # Not started: nothing ran, nothing to clean up.
                self._state = CANCELLED
                self._notify()
            elif state in _OVER:
                return False
            else:
                if self._cancel_requested:
                    return True
                self._cancel_requested = True
                canceller, token = self._canceller, self._token
        if state == PENDING:
            self._invoke_callbacks()
            return True
        if canceller is not None and token is not None:
            # A run that is over delivers the outcome through its close path.
            with contextlib.suppress(RunFinishedError):
                token.run_sync_soon_threadsafe(canceller)
        return True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def result(self, timeout: float | None = None) -> T:
        """As ``concurrent.futures.Future.result``; the wait is one the
        deadlock detector sees (waiting on the thread that must run the work
        raises ``DeadlockError`` instead of hanging)."""
        if self._state not in _OVER:
            thread = graph.thread_node()
            graph.begin(thread, self, f"waiting for {self.label}")
            try:
                self._wait(timeout)
            finally:
                graph.end(thread)
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]
        return super().result(0)  # an error, a cancellation, or a timeout

    def _wait(self, timeout: float | None) -> None:
        # Block on a lock of our own, released by whichever way of ending
        # comes (see _notify). Once done, a future stays done: nothing to
        # re-check under the lock afterwards.
        waiter = _allocate_lock()
        waiter.acquire()
        mutex = self._mutex
        with mutex:
            if self._state in _OVER:
                return
            blocked = self._blocked
            blocked.append(waiter)
        got = False
        try:
            if timeout is None:
                got = waiter.acquire()
            elif timeout > 0:
                got = waiter.acquire(True, timeout)
        finally:
            if not got:  # timed out, or interrupted (Ctrl-C): leave the list
                with mutex, contextlib.suppress(ValueError):
                    blocked.remove(waiter)

    def describe(self) -> str:
        return f"work {self.label!r}"

    # -- the run's side (called on the run's thread) ----------------------

    def claim(self) -> bool:
        """``set_running_or_notify_cancel`` that also answers False, instead
        of raising, for a future that is done already (failed by a close)."""
        with self._mutex:
            state = self._state
            if state == PENDING:
                self._state = RUNNING
                return True
            if state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            return False

    def start(self, token: Token | None, canceller: Callable[[], object]) -> None:
        """The task started; ``canceller()`` (run's thread) cancels it."""
        self.thread_ident = _get_ident()
        if token is not None:
            self.runtime = token.runtime
        with self._mutex:
            if self._state in _OVER:
                return  # ended already (its first step ran at once): no canceller
            self._token = token
            self._canceller = canceller
            requested = self._cancel_requested
        if requested:  # cancel() came between set_running and now
            canceller()

    def set_result(self, result: T) -> None:
        with self._mutex:
            if self._state in _OVER:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            self._notify()
        self._invoke_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        with self._mutex:
            if self._state in _OVER:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_exception(self)
            self._notify()
        self._invoke_callbacks()

    def deliver_value(self, value: T) -> None:
        with self._mutex:  # check-and-set: another thread may deliver too
            if self._state in _OVER:
                return
            self._result = value
            self._state = FINISHED
            if self._waiters:
                for waiter in self._waiters:
                    waiter.add_result(self)
            blocked = self._blocked
            while blocked:
                blocked.pop().release()
            if self._cond is not None:  # someone made the condition: its waiters too
                _notify_all(self._cond)
        # _invoke_callbacks, inline: this is the hottest way of ending.
        self._canceller = None
        pending = self._pending_in
        if pending is not None:
            pending.discard(self)
        for callback in self._done_callbacks:
            try:
                callback(self)
            except Exception:
                _LOGGER.exception("exception calling callback for %r", self)

    def deliver_error(self, error: BaseException) -> None:
        if self.runtime is not None:
            error = as_delivered(error, self.runtime, self.label)
        with self._mutex:
            if self._state in _OVER:
                return
            self._exception = error
            self._state = FINISHED
            for waiter in self._waiters:
                waiter.add_exception(self)
            self._notify()
        self._invoke_callbacks()

    def deliver_cancelled(self, where: str) -> None:
        """The task ended cancelled; ``where`` names the run, for the message."""
        if self._close_error is not None:
            self.deliver_error(self._close_error)
        elif self._cancel_requested:
            self._set_cancelled()
        elif self._token is not None and self._token.native in RUNS_ENDING:
            self.deliver_error(
                RunFinishedError(f"{self.label}: the run of {where} ended under it.")
            )
        else:
            self.deliver_error(
                GuestCancelledError(
                    f"{self.label} was cancelled inside {where}, not by its caller."
                )
            )

    def cancel_for_close(self, error: BaseException) -> None:
        """The run is closing: cancel the task, and end with ``error`` (not a
        cancellation: the caller did not ask for one) once its cleanup ran."""
        with self._mutex:
            self._close_error = error
            if self._state == PENDING:
                self._state = RUNNING
                self.set_exception(error)
                return
        self.cancel()

    def _set_cancelled(self) -> None:
        # concurrent.futures only lets a PENDING future be cancelled; this one
        # was RUNNING, and its task has now finished cancelling.
        with self._mutex:
            if self._state in _OVER:
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._notify()
        self._invoke_callbacks()

    def _notify(self) -> None:
        # With _mutex held, the future just ended: wake every blocked thread.
        blocked = self._blocked
        while blocked:
            blocked.pop().release()
        condition = self._cond
        if condition is not None:
            _notify_all(condition)

    def _invoke_callbacks(self) -> None:
        # Every way of ending comes through here. The canceller (the task,
        # whose context names this future as its work) is dropped: no
        # reference cycle is left for the cycle collector.
        self._canceller = None
        pending = self._pending_in
        if pending is not None:
            pending.discard(self)
        for callback in self._done_callbacks:
            try:
                callback(self)
            except Exception:
                _LOGGER.exception("exception calling callback for %r", self)


#: Work handed to a run: (work, the context it runs in, its future).
WorkItem = tuple[Callable[[], Awaitable[Any]], contextvars.Context, WorkFuture[Any]]

#: How many idle work tasks a run keeps, where a runtime keeps them (starting
#: a task costs more there than a short call: see adapters/_trio.py).
IDLE_WORK_TASKS = 16

#: The states a future never leaves, and its cancelled states.
_OVER = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
_CANCELLED = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED})


def _notify_all(condition: threading.Condition) -> None:
    # Condition.notify_all, inline (its lock is held): release every waiter.
    waiters: Any = condition._waiters  # type: ignore[attr-defined]
    while waiters:
        waiter = waiters.popleft()
        try:  # noqa: SIM105 - contextlib.suppress costs a call per waiter
            waiter.release()
        except RuntimeError:  # released already (gh-92530)
            pass


def describe(obj: object) -> str:
    """A short name for a function or awaitable, for messages."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name else type(obj).__name__


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


_UNSTARTED: Any = object()


class InContext:
    """Awaitable that runs every step of ``coro`` inside ``context``, so the
    work's contextvar changes land in that context (and can be copied back)
    whatever the runtime does with contexts. ``first``: what ``coro``
    yielded in a first step taken already (in ``context``), to go on from."""

    __slots__ = ("_context", "_coro", "_first")

    def __init__(
        self,
        coro: Coroutine[Any, Any, T],
        context: contextvars.Context,
        first: Any = _UNSTARTED,
    ) -> None:
        self._coro = coro
        self._context = context
        self._first = first

    def __await__(self) -> Generator[Any, Any, T]:
        run, send, throw = self._context.run, self._coro.send, self._coro.throw
        yielded, self._first = self._first, None
        if yielded is _UNSTARTED:
            try:
                yielded = run(send, None)
            except StopIteration as stop:
                result: T = stop.value
                return result
        while True:
            value: Any = None
            error: BaseException | None = None
            try:
                value = yield yielded
            except GeneratorExit:
                run(self._coro.close)
                raise
            except BaseException as exc:  # delivered into the coroutine next step
                error = exc
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                result = stop.value
                return result


def copy_back(context: contextvars.Context) -> None:
    """Set, in the current context, every variable whose value in ``context``
    differs: how the work's contextvar changes come back (``copy_back=True``)."""
    here = contextvars.copy_context()
    for var, value in context.items():
        if var is not CURRENT_WORK and (var not in here or here[var] is not value):
            var.set(value)


def bind_work(context: contextvars.Context, future: WorkFuture[Any]) -> None:
    """Mark ``context`` (the work's own) as running ``future``: waits the work
    makes are then the work item's, for the deadlock detector."""
    context.run(CURRENT_WORK.set, future)


async def await_work(adapter: RuntimeAdapter, future: Future[T]) -> T:
    """Await ``future`` in a task of ``adapter``'s runtime; a wait the
    deadlock detector sees when the task is itself a work item."""
    waiter = CURRENT_WORK.get()
    if waiter is None:
        return await adapter.await_future(future)
    with graph.waiting(waiter, future, f"{waiter.label}, awaiting another call"):
        return await adapter.await_future(future)


def as_async_callable(
    fn_or_awaitable: Callable[..., Awaitable[T]] | Awaitable[T],
    args: tuple[Any, ...],
    *,
    api: str = "bridge.block_on",
) -> Callable[[], Awaitable[T]]:
    """Normalise ``block_on``'s first arguments (an awaitable, or an async
    function and its arguments) to a zero-argument callable that returns a
    coroutine. Raises ``TypeError`` saying what it got and the corrected call."""
    kind = type(fn_or_awaitable)
    if kind is FunctionType or kind is MethodType:
        # The common case, an ``async def`` function: calling it is the work.
        code = getattr(fn_or_awaitable, "__code__", None)
        if code is not None and code.co_flags & CO_COROUTINE:
            async_fn: Any = fn_or_awaitable
            return functools.partial(async_fn, *args) if args else async_fn
    if inspect.isawaitable(fn_or_awaitable):
        if args:
            raise TypeError(
                f"{api}() got an awaitable ({describe(fn_or_awaitable)}) and arguments "
                f"{args!r}; pass either an awaitable, or an async function and its "
                f"arguments.\n" + Fix(f"{api}(fn(), *args)", f"{api}(fn, *args)").render()
            )
        awaitable = fn_or_awaitable
        if inspect.iscoroutine(awaitable):
            return lambda: awaitable
        return lambda: _await(awaitable)
    if callable(fn_or_awaitable):
        fn = fn_or_awaitable

        def call() -> Awaitable[T]:
            result = fn(*args)
            if inspect.iscoroutine(result):
                return result
            if inspect.isawaitable(result):
                return _await(result)
            raise TypeError(
                f"{api}() expected an async function, but {describe(fn)} returned "
                f"{type(result).__name__!s}, not an awaitable.\n"
                + Fix(f"{api}({describe(fn)})", f"{describe(fn)}()  # it is sync: call it").render()
            )

        return call
    raise TypeError(
        f"{api}() expected an awaitable or an async function, got "
        f"{type(fn_or_awaitable).__name__} {fn_or_awaitable!r}.\n"
        + Fix(f"{api}(value)", f"{api}(async_fn, *args)  # or {api}(async_fn(*args))").render()
    )
