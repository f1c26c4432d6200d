"""curio behind the adapter interface.

curio has no public way to schedule work onto a kernel from another thread.
A curio token therefore runs a small daemon task inside the kernel (spawned,
on the kernel thread, the first time the kernel's token is asked for) that
waits on a one-shot doorbell (``_Doorbell``); another thread queues a callback
and rings the doorbell, which curio turns into a wakeup of the task
through its own thread-safe wake queue. curio 1.6 is curio's last release,
so the kernel internals used here (the trap table's closures) are fixed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import selectors
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from importlib.metadata import version as _dist_version
from typing import Any, TypeVar

import curio
from curio import meta as _meta
from curio import thread as _curio_thread
from curio.traps import _future_wait, _get_kernel, _scheduler_wait
from curio.workers import ThreadWorker

from bridge._context import (
    Context,
    RunCache,
    Token,
    mark_run_ending,
    worker_context,
)
from bridge._errors import RunFinishedError
from bridge._registry import Outcome, Runner, RuntimeAdapter
from bridge._work import InContext, WorkFuture
from pet_executor._future import HostWaker, Waker, drive_in_host

from ._idle import IdleYield

T = TypeVar("T")

_log = logging.getLogger("runtime_bridge.curio")
_TOKEN_ATTR = "_runtime_bridge_token"


def _kernel_closure(kernel: curio.Kernel, trap: str, name: str) -> Any:
    fn = kernel._traps[trap]
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__, strict=True))
    return cells[name].cell_contents


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    # curio takes coroutines only, not any awaitable.
    return await awaitable


class _Spawner:
    """What ``_spawn_detached`` needs of one kernel, read once from its trap
    table's closures (every work call spawns a task: no per-call lookups)."""

    __slots__ = ("activations", "cancel_task", "reschedule", "taskcls", "tasks")

    def __init__(self, kernel: curio.Kernel) -> None:
        new_task = _kernel_closure(kernel, "trap_spawn", "new_task")
        cells = dict(zip(new_task.__code__.co_freevars, new_task.__closure__, strict=True))
        self.taskcls = cells["taskcls"].cell_contents
        self.tasks = cells["tasks"].cell_contents
        self.reschedule = cells["reschedule_task"].cell_contents
        self.activations = cells["_activations"].cell_contents
        self.cancel_task = kernel._traps["trap_cancel_task"]


_SPAWNER_ATTR = "_runtime_bridge_spawner"


def _spawner(kernel: curio.Kernel) -> _Spawner:
    spawner: _Spawner | None = kernel.__dict__.get(_SPAWNER_ATTR)
    if spawner is None:
        spawner = _Spawner(kernel)
        setattr(kernel, _SPAWNER_ATTR, spawner)
    return spawner


def _spawn_detached(kernel: curio.Kernel, coro: Any) -> Any:
    """Start a daemon task from sync code on the kernel's thread.

    What curio's spawn trap does, minus the parent: a ContextTask enters its
    parent's context to copy it, which fails while that parent is mid-step
    (as it is whenever sync code runs); without a parent it copies the
    current context instead.
    """
    spawner = _spawner(kernel)
    task = spawner.taskcls(coro, None)
    task.daemon = True
    spawner.tasks[task.id] = task
    spawner.reschedule(task)
    for activation in spawner.activations:
        activation.created(task)
    return task


class _Doorbell:
    """What a token's service task waits on with curio's ``_future_wait``
    (which needs only ``add_done_callback`` and ``cancel``): a one-shot
    future without ``concurrent.futures.Future``'s condition, one per wake."""

    __slots__ = ("callback", "rung")

    def __init__(self) -> None:
        self.rung = False
        self.callback: Callable[[_Doorbell], object] | None = None

    def add_done_callback(self, fn: Callable[[_Doorbell], object]) -> None:
        # Called on the kernel's thread, by the trap, with the token's lock
        # not held: ``ring`` may come from another thread at the same time.
        # Whichever of the two comes second calls ``fn`` (the GIL orders them).
        self.callback = fn
        if self.rung:
            fn(self)

    def ring(self) -> None:
        """Under the token's lock, at most once per doorbell."""
        self.rung = True
        callback = self.callback
        if callback is not None:
            callback(self)

    def done(self) -> bool:
        return self.rung

    def cancel(self) -> bool:
        return False


class CurioToken(Token):
    """Schedules callbacks onto one curio kernel through a service task."""

    __slots__ = ("__weakref__", "_closed", "_kernel", "_lock", "_queue", "_wakeup", "paused")
    runtime = "curio"

    def __init__(self, kernel: curio.Kernel) -> None:
        # Must run on the kernel's thread, inside one of its tasks.
        self._kernel = kernel
        self._lock = threading.Lock()
        self._queue: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._wakeup = _Doorbell()
        self._closed = False
        #: Set by a runner between two calls: nothing drives the kernel then.
        self.paused = False
        _spawn_detached(kernel, self._serve())

    @property
    def native(self) -> curio.Kernel:
        return self._kernel

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RunFinishedError("the curio kernel this token belongs to has shut down.")
            if self.paused:
                raise RunFinishedError(
                    "the curio kernel this token belongs to is paused between two calls "
                    "of its runner; nothing would run the callback."
                )
            self._queue.append((fn, args))
            if not self._wakeup.rung:
                self._wakeup.ring()

    async def _serve(self) -> None:
        try:
            while True:
                await _future_wait(self._wakeup)
                with self._lock:
                    self._wakeup = _Doorbell()
                self._drain()
        finally:
            with self._lock:
                self._closed = True
            self._drain()  # what was queued before the close still runs, once

    def _drain(self) -> None:
        # The callbacks run inside this service task, but for their code they
        # are callbacks of the loop: detection says so.
        _in_callback.flag = True
        try:
            while self._queue:
                fn, args = self._queue.popleft()
                try:
                    fn(*args)
                except Exception:
                    _log.exception("callback %r scheduled through a curio token failed", fn)
        finally:
            _in_callback.flag = False


class _TaskWaker(HostWaker):
    """Wakes a curio task parked in ``await_pet_future``; also the scheduler
    primitive it parks on (curio's ``_kernel_suspend``/``_kernel_wake``)."""

    __slots__ = ("kernel", "reschedule", "task", "thread", "token")

    def __init__(self, kernel: curio.Kernel) -> None:
        self.kernel = kernel
        self.token = kernel_token(kernel)  # made here, on the kernel's thread
        self.reschedule = _kernel_closure(kernel, "trap_sched_wake", "reschedule_task")
        self.thread = threading.get_ident()
        self.task: Any = None
        self.woken = False

    def _kernel_suspend(self, task: Any) -> Callable[[], None]:
        self.task = task
        return self._forget

    def _forget(self) -> None:  # the parked task was cancelled
        self.task = None

    def _kernel_wake(self, n: int = 1) -> list[Any]:
        task, self.task = self.task, None
        return [] if task is None else [task]

    def wake(self) -> None:
        if threading.get_ident() == self.thread and _meta._locals.__dict__.get("running"):
            self.wake_here()
            return
        with contextlib.suppress(RunFinishedError):
            self.token.run_sync_soon_threadsafe(self.wake_here)

    def wake_here(self) -> None:
        task, self.task = self.task, None
        if task is None:
            self.woken = True  # woken during its own poll: poll again at once
        else:
            self.reschedule(task)

    def will_wake(self, other: Waker) -> bool:
        return self is other


class _YieldingSelector(selectors.DefaultSelector):
    """A pet kernel's selector: it yields once before it blocks (see
    adapters/_idle.py), so a thread about to wake the kernel rings while the
    kernel is still awake."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = IdleYield()
        self.events: list[tuple[Any, int]] = []

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if (timeout is None or timeout > 0) and self.idle.first(self._poll_now):
            events, self.events = self.events, []
            return events
        return super().select(timeout)

    def _poll_now(self) -> bool:
        self.events = super().select(0)
        return bool(self.events)


class _CallbackFlag(threading.local):
    flag = False


_in_callback = _CallbackFlag()


def kernel_token(kernel: curio.Kernel) -> CurioToken:
    """The token of ``kernel``; call on the kernel's thread, inside a task."""
    token: CurioToken | None = kernel.__dict__.get(_TOKEN_ATTR)
    if token is None:
        token = CurioToken(kernel)
        setattr(kernel, _TOKEN_ATTR, token)
    return token


async def _current_kernel_token() -> CurioToken:
    return kernel_token(await _get_kernel())


async def _run_work(
    work: Callable[[], Awaitable[T]], context: contextvars.Context, future: WorkFuture[T]
) -> None:
    # curio tasks have no context of their own: InContext runs every step of
    # the work in the caller's copied context.
    try:
        value: T = await InContext(work(), context)  # type: ignore[arg-type]
    except curio.TaskCancelled:
        future.deliver_cancelled("a curio task")
    except BaseException as error:
        future.deliver_error(error)
    else:
        future.deliver_value(value)


class CurioRunner(Runner):
    """A curio kernel kept on one thread between calls."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._kernel = curio.Kernel(**options)
        self._token: CurioToken | None = None
        self._task: Any = None

    @property
    def token(self) -> Token:
        if self._token is None:
            # The kernel's token is made inside the kernel, on first use.
            self._token = self._kernel.run(_current_kernel_token)
            self._token.paused = True
        return self._token

    def run(
        self,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        deadline: float | None,
        cleanup_s: float,
    ) -> Outcome:
        token = self.token
        assert isinstance(token, CurioToken)

        async def main() -> Outcome:
            self._task = await curio.current_task()
            coro: Coroutine[Any, Any, T] = _as_coroutine(InContext(work(), context))  # type: ignore[arg-type]
            try:
                if deadline is None:
                    return ("value", await coro)
                remaining = max(0.0, deadline - time.monotonic())
                return ("value", await curio.timeout_after(remaining, coro))
            except (curio.TaskCancelled, curio.TaskTimeout):
                return ("cancelled", None)
            except Exception as exc:
                return ("error", exc)

        token.paused = False
        try:
            outcome: Outcome = self._kernel.run(main)
        except Exception as exc:
            # The kernel itself crashed (curio raises a foreign trap's error
            # out of the kernel, not into the task): the work gets the error,
            # and the next call gets a new kernel.
            _abandon(self._kernel)
            self._kernel, self._token = curio.Kernel(**self._options), None
            return ("error", exc)
        finally:
            token.paused = True
            self._task = None
        return outcome

    def cancel_current(self) -> None:
        task, token = self._task, self._token
        if task is not None and token is not None:
            cancel = self._kernel._traps["trap_cancel_task"]
            token.run_sync_soon_threadsafe(cancel, task)

    def close(self) -> None:
        if self._token is not None:
            self._token.paused = False
        mark_run_ending(self._kernel)
        self._kernel.run(shutdown=True)


def _abandon(kernel: curio.Kernel) -> None:
    """Release a crashed kernel's resources: it cannot run its own shutdown
    (curio forgets its shutdown functions when it crashes). Its loopback
    sockets are the wake-up one and whatever its selector watches."""
    selector = kernel._selector
    with contextlib.suppress(Exception):
        for key in list(selector.get_map().values()):
            key.fileobj.close()
    with contextlib.suppress(Exception):
        wake = _kernel_closure(kernel, "trap_future_wait", "wake")
        cells = dict(zip(wake.__code__.co_freevars, wake.__closure__, strict=True))
        cells["notify_sock"].cell_contents.close()
    with contextlib.suppress(Exception):
        selector.close()
    kernel._shutdown_funcs = None  # its __del__ would complain otherwise
    for task in list(kernel._tasks.values()):
        task.daemon = True  # likewise each unfinished task's __del__


class CurioAdapter(RuntimeAdapter):
    name = "curio"
    module = "curio"

    def __init__(self) -> None:
        self._cache = RunCache()

    def version(self) -> str:
        return _dist_version("curio")

    def detect_loop(self) -> Context | None:
        # A threading.local's __dict__ is this thread's: no AttributeError cost.
        kernel = (
            _meta._locals.__dict__.get("kernel") if _meta._locals.__dict__.get("running") else None
        )
        if kernel is None:
            return None
        snapshots = self._cache.get(kernel) or self._cache.store(kernel, kernel_token(kernel))
        # curio itself has no loop callbacks (sync code on the kernel thread
        # runs in a task's step); callbacks sent through a token are ours.
        return snapshots.in_callback if _in_callback.flag else snapshots.task()

    def detect_worker(self) -> Context | None:
        async_thread = _curio_thread._locals.__dict__.get("thread")
        if async_thread is not None:
            # An async thread can run coroutines in its backing task (AWAIT):
            # that is where its kernel's token is found, once per thread.
            token = async_thread.__dict__.get(_TOKEN_ATTR)
            if token is None:
                token = _curio_thread.AWAIT(_current_kernel_token)
                setattr(async_thread, _TOKEN_ATTR, token)
            return worker_context("curio", token)
        target = getattr(threading.current_thread(), "_target", None)
        if getattr(target, "__func__", None) is ThreadWorker.run_worker:
            # run_in_thread's pool serves every kernel; the owner is unknown.
            return worker_context("curio", None)
        return None

    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        portals: bool = False,
        **options: Any,
    ) -> T:
        if portals:
            from bridge._portal import curio_portal_task_class

            options["taskcls"] = curio_portal_task_class(options.get("taskcls"))
        kernel = curio.Kernel(**options)
        try:
            result: T = kernel.run(async_fn, *args)
        finally:
            mark_run_ending(kernel)  # work cancelled from here on: the run ended
            kernel.run(shutdown=True)
        return result

    def pet_options(self) -> dict[str, Any]:
        # Its work comes from other threads: see _YieldingSelector.
        if not IdleYield.available:
            return {}
        return {"selector": _YieldingSelector()}

    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        kernel: Any = token.native
        task = _spawn_detached(kernel, _run_work(work, context, future))
        future.start(token, functools.partial(_spawner(kernel).cancel_task, task))

    async def await_future(
        self,
        future: concurrent.futures.Future[T],
        *,
        abandon_on_cancel: bool = False,
        start: Callable[[], object] | None = None,
    ) -> T:
        if start is not None:
            start()  # curio's trap registers the wait itself: hand over first
        try:
            await _future_wait(future)
        except curio.CancelledError:
            # Ask the work to stop, and (unless abandoning it) wait,
            # uncancellable, until it has: its cleanup runs first.
            future.cancel()
            if not abandon_on_cancel:
                async with curio.disable_cancellation():
                    await _future_wait(future)
            raise
        return future.result()

    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        try:
            result: T = await curio.timeout_after(seconds, _as_coroutine(awaitable))
        except curio.TaskTimeout:
            raise TimeoutError(f"the work did not finish within {seconds} s") from None
        return result

    def cancel_exception(self) -> BaseException:
        error: BaseException = curio.TaskCancelled()
        return error

    def current_task_name(self) -> str | None:
        kernel = _meta._locals.__dict__.get("kernel")
        if kernel is None:
            return None
        task = _kernel_closure(kernel, "trap_get_current", "current")
        return None if task is None else str(task.name)

    async def await_pet_future(self, future: Any) -> Any:
        # Parks the task on a one-task scheduler primitive; the waker
        # reschedules it directly on the kernel's thread, through the
        # kernel's token from other threads.
        kernel = await _get_kernel()
        waker = _TaskWaker(kernel)
        return await drive_in_host(future, waker, lambda: _scheduler_wait(waker, "PET_FUTURE_WAIT"))

    def new_runner(self, **options: Any) -> Runner:
        return CurioRunner(**options)

    def token_for(self, native: Any) -> Token:
        return kernel_token(native)


Adapter = CurioAdapter
