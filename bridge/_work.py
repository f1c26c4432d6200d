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
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING
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
    "InContext",
    "WorkFuture",
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
    """

    def __init__(self, label: str = "work") -> None:
        super().__init__()
        self.label = label
        self._token: Token | None = None
        self._canceller: Callable[[], object] | None = None
        self._cancel_requested = False
        self._close_error: BaseException | None = None
        #: The thread that runs the work (a loop's, or a worker's): set at start.
        self.thread_ident: int | None = None
        #: The runtime that runs the work, when it is async work.
        self.runtime: str | None = None

    # -- the caller's side -----------------------------------------------

    def cancel(self) -> bool:
        with self._condition:
            if self._state == PENDING:
                # Not started: nothing ran, nothing to clean up.
                return super().cancel()
            if self._state in (CANCELLED_AND_NOTIFIED, FINISHED) or self.cancelled():
                return False
            if self._cancel_requested:
                return True
            self._cancel_requested = True
            canceller, token = self._canceller, self._token
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
        if self.done():
            return super().result()
        thread = graph.thread_node()
        graph.begin(thread, self, f"waiting for {self.label}")
        try:
            return super().result(timeout)
        finally:
            graph.end(thread)

    def describe(self) -> str:
        return f"work {self.label!r}"

    # -- the run's side (called on the run's thread) ----------------------

    def start(self, token: Token | None, canceller: Callable[[], object]) -> None:
        """The task started; ``canceller()`` (run's thread) cancels it."""
        self.thread_ident = threading.get_ident()
        if token is not None:
            self.runtime = token.runtime
        with self._condition:
            self._token = token
            self._canceller = canceller
            requested = self._cancel_requested
        if requested:  # cancel() came between set_running and now
            canceller()

    def deliver_value(self, value: T) -> None:
        with self._condition:  # check-and-set: another thread may deliver too
            if not self.done():
                self.set_result(value)

    def deliver_error(self, error: BaseException) -> None:
        if self.runtime is not None:
            error = as_delivered(error, self.runtime, self.label)
        with self._condition:
            if not self.done():
                self.set_exception(error)

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
        with self._condition:
            self._close_error = error
            if self._state == PENDING:
                self.set_running_or_notify_cancel()
                self.set_exception(error)
                return
        self.cancel()

    def _set_cancelled(self) -> None:
        # concurrent.futures only lets a PENDING future be cancelled; this one
        # was RUNNING, and its task has now finished cancelling.
        with self._condition:
            if self._state in (CANCELLED_AND_NOTIFIED, FINISHED):
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]


def describe(obj: object) -> str:
    """A short name for a function or awaitable, for messages."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name else type(obj).__name__


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class InContext:
    """Awaitable that runs every step of ``coro`` inside ``context``, so the
    work's contextvar changes land in that context (and can be copied back)
    whatever the runtime does with contexts."""

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, T], context: contextvars.Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, T]:
        run, send, throw = self._context.run, self._coro.send, self._coro.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                run(self._coro.close)
                raise
            except BaseException as exc:  # delivered into the coroutine next step
                value, error = None, exc


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
