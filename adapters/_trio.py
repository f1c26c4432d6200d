"""trio behind the adapter interface."""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import version as _dist_version
from typing import Any, NoReturn, TypeVar

import outcome
import trio
from trio._core._entry_queue import EntryQueue
from trio._core._run_context import GLOBAL_RUN_CONTEXT
from trio._threads import PARENT_TASK_DATA

from bridge._context import (
    PORTAL_RUNS,
    Context,
    RunCache,
    Token,
    worker_context,
)
from bridge._errors import RunFinishedError
from bridge._registry import RuntimeAdapter
from bridge._work import IDLE_WORK_TASKS, WorkFuture, WorkItem, describe
from pet_executor._future import HostWaker, Waker, drive_in_host

T = TypeVar("T")

# run_sync_soon callbacks run inside this system task: they are callbacks of
# the loop, not code of a task that may await.
_ENTRY_TASK_CODE = EntryQueue.task.__code__
_RUN_STATE = GLOBAL_RUN_CONTEXT


class TrioToken(Token):
    __slots__ = ("_token",)
    runtime = "trio"

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token

    @property
    def native(self) -> trio.lowlevel.TrioToken:
        return self._token

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            raise RunFinishedError("the trio run this token belongs to has finished.") from None


#: The work tasks of a run that wait for an item, most recent last.
_IDLE: trio.lowlevel.RunVar[list[_WorkTask]] = trio.lowlevel.RunVar("bridge_idle_work_tasks")


class _WorkTask:
    """A system task that runs work items one after another, each in its own
    context (the task's context is the item's while it runs: trio steps a
    task in ``task.context``), under the task's one cancel scope.

    Starting a trio task and entering a cancel scope cost microseconds each:
    a work task pays for them once, and later calls find it idle (``_IDLE``)
    and hand it their item. Cancelling an item cancels the scope (only while
    that item runs); the task then ends, and later calls start a new one.
    Anything escaping a system task would crash the run, so every end of an
    item is delivered to its future instead. When the run ends, idle tasks
    leave at once and a running item ends with ``RunFinishedError``.
    """

    __slots__ = ("_idle", "_running", "_scope", "_task")

    def __init__(self, idle: list[_WorkTask]) -> None:
        self._idle = idle
        self._running: WorkFuture[Any] | None = None

    async def serve(self, token: Token, item: WorkItem) -> None:
        task = self._task = trio.lowlevel.current_task()
        with trio.CancelScope() as scope:
            self._scope = scope
            while True:
                work, _, future = item
                self._running = future
                task.name = describe(work)
                future.start(token, functools.partial(self._cancel, future))
                try:
                    value: Any = await work()
                except trio.Cancelled:
                    if not scope.cancel_called:  # the run itself is ending
                        future.deliver_error(
                            RunFinishedError("the trio run ended while the work was running.")
                        )
                        raise
                    future.deliver_cancelled("a trio task")
                    raise  # to the scope, which ends the task
                except BaseException as error:
                    future.deliver_error(error)
                else:
                    future.deliver_value(value)
                self._running = None
                if scope.cancel_called or len(self._idle) >= IDLE_WORK_TASKS:
                    return  # cancelled too late (the work ate it), or enough idle
                self._idle.append(self)
                item = await trio.lowlevel.wait_task_rescheduled(self._leave)

    def run(self, item: WorkItem) -> None:
        """Hand an idle work task ``item`` (on the run's thread): its next
        step, and every step of the item, runs in the item's context."""
        self._task.context = item[1]
        trio.lowlevel.reschedule(self._task, outcome.Value(item))

    def _cancel(self, future: WorkFuture[Any]) -> None:
        if self._running is future:  # not an item that ended already
            self._scope.cancel()

    def _leave(self, _: object) -> trio.lowlevel.Abort:
        # Idle, and the run is ending.
        with contextlib.suppress(ValueError):
            self._idle.remove(self)
        return trio.lowlevel.Abort.SUCCEEDED


class _TaskWaker(HostWaker):
    """Wakes a trio task parked in ``await_pet_future``."""

    __slots__ = ("parked", "runner", "task", "token")

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.runner = _RUN_STATE.runner
        self.parked = False
        self.woken = False

    def abort(self, _: object) -> trio.lowlevel.Abort:
        self.parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        if _RUN_STATE.__dict__.get("runner") is self.runner:
            self.wake_here()
            return
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.wake_here)

    def wake_here(self) -> None:
        if self.parked:
            self.parked = False
            trio.lowlevel.reschedule(self.task)
        else:
            self.woken = True  # woken during its own poll: poll again at once

    def will_wake(self, other: Waker) -> bool:
        return self is other


def _return(coro: T) -> T:
    # spawn_system_task takes an async function: this one returns the
    # coroutine already made (with its portal), as a lambda would, without
    # making a lambda per call.
    return coro


_spawn_system_task = trio.lowlevel.spawn_system_task


def _leave_worker() -> None:
    del PARENT_TASK_DATA.token
    del PARENT_TASK_DATA.abandon_on_cancel


class TrioAdapter(RuntimeAdapter):
    name = "trio"
    module = "trio"

    def __init__(self) -> None:
        self._cache = RunCache()

    def version(self) -> str:
        return _dist_version("trio")

    def detect_loop(self) -> Context | None:
        # A threading.local's __dict__ is this thread's: reading it costs no
        # AttributeError when the attribute is unset (most threads).
        run = _RUN_STATE.__dict__
        runner = run.get("runner")
        if runner is None:
            return None
        task = run.get("task")
        if task is None and runner.is_guest:
            return None  # the host loop's own code, between two guest ticks
        snapshots = self._cache.get(runner) or self._cache.store(
            runner, TrioToken(trio.lowlevel.current_trio_token())
        )
        if task is None or getattr(task.coro, "cr_code", None) is _ENTRY_TASK_CODE:
            return snapshots.in_callback
        return snapshots.task()

    def detect_worker(self) -> Context | None:
        token = PARENT_TASK_DATA.__dict__.get("token")
        if token is None:
            return None
        return worker_context("trio", TrioToken(token))

    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        portals: bool = False,
        **options: Any,
    ) -> T:
        if portals:
            from bridge._portal import trio_portal_instrument

            options["instruments"] = [trio_portal_instrument(), *options.get("instruments", ())]
            return self._run_with_portals(async_fn, args, options)
        result: T = trio.run(async_fn, *args, **options)
        return result

    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        try:
            idle = _IDLE.get()
        except LookupError:  # the run's first work item
            idle = []
            _IDLE.set(idle)
        if idle:
            idle.pop().run((work, context, future))
            return
        coro: Any = _WorkTask(idle).serve(token, (work, context, future))
        if token.native in PORTAL_RUNS:
            # Imported by then: a portal run's main task put its token there.
            coro = sys.modules["bridge._portal"].with_portal(coro)
        _spawn_system_task(_return, coro, name=describe(work), context=context)

    async def await_future(
        self,
        future: concurrent.futures.Future[T],
        *,
        abandon_on_cancel: bool = False,
        start: Callable[[], object] | None = None,
    ) -> T:
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        raise_cancel: Callable[[], NoReturn] | None = None
        parked = False  # these two only change on the trio thread

        def wake() -> None:
            nonlocal parked
            if parked:
                parked = False
                trio.lowlevel.reschedule(task)

        def on_done(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(wake)

        def abort(cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            # Ask the work to stop; unless abandoning it, keep waiting until
            # it has stopped.
            nonlocal raise_cancel, parked
            raise_cancel = cancel
            future.cancel()
            if abandon_on_cancel:
                parked = False
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        future.add_done_callback(on_done)
        if start is not None:
            start()
        while not future.done():
            parked = True
            await trio.lowlevel.wait_task_rescheduled(abort)
        if future.cancelled() and raise_cancel is not None:
            raise_cancel()
        return future.result()

    def enter_worker(self, token: Token) -> Callable[[], None]:
        # What trio's own workers carry: trio.from_thread.run finds the run
        # here, and (abandon_on_cancel) runs the call in a system task.
        PARENT_TASK_DATA.token = token.native  # type: ignore[assignment]
        PARENT_TASK_DATA.abandon_on_cancel = True
        return _leave_worker

    @staticmethod
    def _run_with_portals(
        async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], options: dict[str, Any]
    ) -> T:
        async def main() -> T:
            # Our work tasks are system tasks, which the instrument leaves
            # alone: spawn_work gives them portals itself.
            PORTAL_RUNS.add(trio.lowlevel.current_trio_token())
            return await async_fn(*args)

        result: T = trio.run(main, **options)
        return result

    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        try:
            with trio.fail_after(seconds):
                return await awaitable
        except trio.TooSlowError:
            raise TimeoutError(f"the work did not finish within {seconds} s") from None

    def cancel_exception(self) -> BaseException:
        return trio.Cancelled._create()

    def current_task_name(self) -> str | None:
        return trio.lowlevel.current_task().name

    async def await_pet_future(self, future: Any) -> Any:
        # Parks the task with wait_task_rescheduled; the waker reschedules
        # it directly on this run's thread, through the token from others.
        waker = _TaskWaker()

        async def park() -> None:
            waker.parked = True
            await trio.lowlevel.wait_task_rescheduled(waker.abort)

        return await drive_in_host(future, waker, park)

    def new_runner(self, **options: Any) -> None:
        return None  # a trio run cannot be resumed: trio work goes to its pet

    def token_for(self, native: Any) -> Token:
        return TrioToken(native)


Adapter = TrioAdapter
