"""pet_executor, the project's own runtime, behind the adapter interface.

Our runtime speaks the adapter's language natively: its kernel has a token
(``run_sync_soon_threadsafe``), its join handles are futures that any waker
can drive, and a kernel can be driven again and again on one thread (the
runner for ``block_on``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, TypeVar

import pet_executor
from bridge._context import (
    Context,
    RunCache,
    Token,
    mark_run_ending,
)
from bridge._errors import RunFinishedError
from bridge._registry import Outcome, Runner, RuntimeAdapter
from bridge._work import IDLE_WORK_TASKS, WorkFuture, WorkItem, describe
from pet_executor import Cancelled, FutureBase, JoinHandle, Poll, Waker, shield
from pet_executor.lowlevel import Kernel, Timer, current_kernel, current_task_or_none

T = TypeVar("T")

_PENDING = Poll.PENDING


class _Deliver(Waker):
    """Waits on a work task's handle (as any host would: a waker of its own)
    and reports its end to the work's future, on the kernel's thread."""

    __slots__ = ("_future", "_handle", "_kernel")

    def __init__(self, handle: JoinHandle[T], future: WorkFuture[T], kernel: Kernel) -> None:
        self._handle = handle
        self._future = future
        self._kernel = kernel

    def wake(self) -> None:
        future = self._future
        try:
            result = self._handle.poll(pet_executor.Context(self))
        except Cancelled:
            if self._kernel.closing and not future.cancel_requested:
                future.deliver_error(
                    RunFinishedError("the pet_executor run ended while the work was running.")
                )
            else:
                future.deliver_cancelled("a pet_executor task")
        except BaseException as error:
            future.deliver_error(error)
        else:
            if result is not _PENDING:  # a spurious wake: it stays registered
                future.deliver_value(result.value)


#: The kernel attribute that holds its idle work tasks, most recent last.
_IDLE_ATTR = "_runtime_bridge_idle_work_tasks"


class _NextItem(FutureBase[Any]):
    """What an idle work task awaits: the next item, handed over on the
    kernel's thread by :meth:`_WorkTask.run`."""

    __slots__ = ("item", "waker")

    def __init__(self) -> None:
        self.item: WorkItem | None = None
        self.waker: Waker | None = None

    def poll(self, cx: pet_executor.Context, /) -> Poll[Any]:
        item = self.item
        if item is not None:
            return Poll(item)
        self.waker = cx.waker
        return _PENDING


class _WorkTask:
    """A task of the kernel that runs work items one after another, each in
    its own context (the task's steps run in the item's context while it
    runs). Spawning a task, wrapping it in a portal and joining it cost more
    than the noop they run: a work task pays for them once, and later calls
    find it idle and hand it their item. Cancelling an item aborts the task
    (only while that item runs); it then ends, and later calls start a new
    one. When the kernel closes, idle tasks are aborted like any other and
    leave; a running item ends with ``RunFinishedError``."""

    __slots__ = ("_cancelled", "_handle", "_idle", "_next", "_running")

    def __init__(self, idle: list[_WorkTask]) -> None:
        self._idle = idle
        self._running: WorkFuture[Any] | None = None
        self._cancelled: WorkFuture[Any] | None = None
        self._next: _NextItem | None = None
        self._handle: JoinHandle[None] | None = None

    def start(self, kernel: Kernel, token: Token, item: WorkItem) -> None:
        self._handle = kernel.spawn(
            self._serve, token, item, name=describe(item[0]), context=item[1]
        )

    async def _serve(self, token: Token, item: WorkItem) -> None:
        kernel = current_kernel()
        assert kernel is not None
        task = pet_executor.current_task()
        while True:
            work, _, future = item
            self._running = future
            task.name = describe(work)
            future.start(token, functools.partial(self._cancel, future))
            try:
                value: Any = await work()
            except Cancelled:
                if self._cancelled is future:
                    future.deliver_cancelled("a pet_executor task")
                else:  # the kernel is closing
                    future.deliver_error(
                        RunFinishedError("the pet_executor run ended while the work was running.")
                    )
                raise
            except Exception as error:
                future.deliver_error(error)
            except BaseException as error:  # KeyboardInterrupt, SystemExit: the kernel's too
                future.deliver_error(error)
                raise
            else:
                future.deliver_value(value)
            self._running = None
            if self._cancelled is not None or len(self._idle) >= IDLE_WORK_TASKS or kernel.closing:
                return  # aborted too late (the work ate it), enough idle, or closing
            self._next = waiting = _NextItem()
            self._idle.append(self)
            try:
                item = await waiting
            except Cancelled:
                with contextlib.suppress(ValueError):
                    self._idle.remove(self)
                raise

    def run(self, item: WorkItem) -> None:
        """Hand an idle work task ``item`` (on the kernel's thread): its next
        step, and every step of the item, runs in the item's context."""
        waiting, handle = self._next, self._handle
        assert waiting is not None
        assert handle is not None
        self._next = None
        handle.task._run = item[1].run
        waiting.item = item
        if waiting.waker is not None:
            waiting.waker.wake()

    def _cancel(self, future: WorkFuture[Any]) -> None:
        if self._running is future and self._handle is not None:  # not an item that ended
            self._cancelled = future
            self._handle.abort()


class _ConcurrentWait(FutureBase[T]):
    """Ready when a ``concurrent.futures.Future`` is done (its result, or its
    error); woken from whichever thread completes it."""

    __slots__ = ("_future", "_registered", "_waker")

    def __init__(self, future: concurrent.futures.Future[T]) -> None:
        self._future = future
        self._waker: Waker | None = None
        self._registered = False

    def poll(self, cx: pet_executor.Context, /) -> Poll[T]:
        if self._future.done():
            return Poll(self._future.result())
        self._waker = cx.waker
        if not self._registered:
            self._registered = True
            self._future.add_done_callback(self._on_done)
        return _PENDING

    def _on_done(self, _: object) -> None:
        waker = self._waker
        if waker is not None:
            waker.wake()

    def drop(self) -> None:
        self._waker = None  # concurrent futures cannot forget a callback; it goes quiet


class _Settled(_ConcurrentWait[Any]):
    """Ready when the future is done, whatever its outcome."""

    __slots__ = ()

    def poll(self, cx: pet_executor.Context, /) -> Poll[Any]:
        if self._future.done():
            return Poll.ready(None)
        return super().poll(cx)


class PetExecutorRunner(Runner):
    """A kernel kept on one thread between ``block_on`` calls; paused (its
    token refusing work) between two runs."""

    def __init__(self, *, clock: pet_executor.Clock | None = None) -> None:
        self._kernel = Kernel(clock=clock)
        self._kernel.set_paused(True)
        self._handle: JoinHandle[Any] | None = None

    @property
    def token(self) -> Token:
        return self._kernel.token

    def run(
        self,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        deadline: float | None,
        cleanup_s: float,
    ) -> Outcome:
        kernel = self._kernel
        handle: JoinHandle[T] = kernel.spawn(work, name=describe(work), context=context)
        self._handle = handle
        timers: list[Timer] = []
        # The task's end stops the drive: the kernel polls the handle for us,
        # with a waker that stops it (on the kernel's thread).
        done_waker = pet_executor.Context(Waker(kernel.stop))

        def on_deadline() -> None:
            handle.abort()
            timers.append(kernel.call_at(kernel.now() + cleanup_s, kernel.stop))

        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            timers.append(kernel.call_at(kernel.now() + delay, on_deadline))
        kernel.set_paused(False)
        try:
            if handle.poll(done_waker) is _PENDING:
                kernel.run_forever()
        finally:
            for timer in timers:
                timer.cancel()
            handle.drop()
            kernel.set_paused(True)
            self._handle = None
        if not handle.done():
            handle.detach()  # stays pending until the next call (dropping would abort it)
            return ("pending", None)
        try:
            result = handle.poll(done_waker)
        except Cancelled:
            return ("cancelled", None)
        except BaseException as error:
            return ("error", error)
        return ("value", result.value)

    def cancel_current(self) -> None:
        # Called from a signal handler, between two bytecodes of the loop:
        # hand the abort to the kernel's own turn (which it also wakes).
        handle = self._handle
        if handle is not None:
            with contextlib.suppress(RunFinishedError):
                self._kernel.token.run_sync_soon_threadsafe(handle.abort)

    def close(self) -> None:
        mark_run_ending(self._kernel)  # work cancelled from here on: the run ended
        self._kernel.close()


class PetExecutorAdapter(RuntimeAdapter):
    name = "pet_executor"
    module = "pet_executor"

    def __init__(self) -> None:
        self._cache = RunCache()

    def version(self) -> str:
        try:
            return _dist_version("runtime-bridge")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0+unknown"

    def detect_loop(self) -> Context | None:
        kernel = current_kernel()
        if kernel is None:
            return None
        snapshots = self._cache.get(kernel) or self._cache.store(kernel, kernel.token)
        return snapshots.in_callback if current_task_or_none() is None else snapshots.task()

    def detect_worker(self) -> Context | None:
        # pet_executor has no offload threads of its own (bridge.spawn_blocking
        # workers report themselves). When it gains one (a run_in_thread), its
        # workers will be recognised here, with their kernel's token.
        return None

    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        portals: bool = False,
        **options: Any,
    ) -> T:
        if portals:
            # Every task's coroutine runs inside a portal, as asyncio's task
            # factory and curio's task class arrange for theirs.
            from bridge._portal import with_portal

            options["task_wrapper"] = with_portal
        return pet_executor.run(async_fn, *args, **options)

    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        kernel: Kernel = token.native  # type: ignore[assignment]
        idle: list[_WorkTask] | None = kernel.__dict__.get(_IDLE_ATTR)
        if idle is None:
            idle = []
            setattr(kernel, _IDLE_ATTR, idle)
        if idle:
            idle.pop().run((work, context, future))
        else:
            _WorkTask(idle).start(kernel, token, (work, context, future))

    async def await_future(
        self,
        future: concurrent.futures.Future[T],
        *,
        abandon_on_cancel: bool = False,
        start: Callable[[], object] | None = None,
    ) -> T:
        if start is not None:
            start()  # the wait registers at its first poll: hand over first
        try:
            return await _ConcurrentWait(future)
        except Cancelled:
            # Ask the work to stop and, unless abandoning it, wait (shielded)
            # until it has: its cleanup runs before this task finishes cancelling.
            future.cancel()
            if not abandon_on_cancel:
                with shield():
                    await _Settled(future)
            raise

    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        with pet_executor.timeout(seconds):
            return await awaitable
        raise AssertionError("unreachable: a timeout scope raises, it does not swallow")

    def cancel_exception(self) -> BaseException:
        return Cancelled()

    def current_task_name(self) -> str | None:
        task = current_task_or_none()
        return None if task is None else task.name

    def new_runner(self, **options: Any) -> Runner:
        return PetExecutorRunner(**options)

    def token_for(self, native: Any) -> Token:
        if not isinstance(native, Kernel):
            raise TypeError(
                f"a pet_executor token is made from a pet_executor Kernel, not {native!r}"
            )
        return native.token


Adapter = PetExecutorAdapter
