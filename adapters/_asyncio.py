"""asyncio (and uvloop) behind the adapter interface."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import platform
import sys
import threading
import time
from _thread import get_ident
from asyncio import current_task
from asyncio.events import _get_running_loop, _set_running_loop
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import thread as _cf_thread
from types import CodeType, FrameType
from typing import Any, TypeVar

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

T = TypeVar("T")


async def _as_coroutine(async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await async_fn(*args)


# Python 3.11+ runs a task in a given context (so changes land in it).
_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)
# Python 3.12+ can take a task's first step inside its constructor.
_EAGER_START = sys.version_info >= (3, 12)
# The task a loop is stepping: before 3.12, current_task() is a Python
# function around this dict's get.
_task_of: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    current_task if _EAGER_START else asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
)

# The default executor of an asyncio loop names its threads "asyncio_N", and
# uvloop's "uvloop_N"; a user's own executor (even if set as the default) does not.
_DEFAULT_EXECUTOR_PREFIXES = ("asyncio", "uvloop")

_POOL_WORKER = Context(runtime=None, role="worker")

# How long a default-executor worker waits, the first time it is asked, for its
# loop to finish chaining the work item (run_in_executor submits, then chains).
_CHAIN_WAIT_S = 1.0


def _find_code(outer: CodeType, name: str) -> CodeType:
    for const in outer.co_consts:
        if isinstance(const, CodeType) and const.co_name == name:
            return const
    raise RuntimeError(f"{outer.co_name} has no inner function {name}")  # pragma: no cover


# run_in_executor wraps the executor's future with asyncio.futures._chain_future,
# whose done callback _call_set_state closes over the destination loop.
_CALL_SET_STATE = _find_code(
    asyncio.futures._chain_future.__code__,  # type: ignore[attr-defined]
    "_call_set_state",
)
_WORK_ITEM_RUN = _cf_thread._WorkItem.run.__code__


class AsyncioToken(Token):
    __slots__ = ("_loop",)
    runtime = "asyncio"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def native(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        if not loop.is_running():
            raise RunFinishedError(
                f"the asyncio loop {loop!r} is not running; nothing would run the callback."
            )
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError as exc:  # closed meanwhile
            raise RunFinishedError(f"the asyncio loop {loop!r} closed: {exc}.") from None


class _LoopCache(RunCache):
    # For a default-executor worker: its owner's snapshot (the thread serves
    # that loop for life).
    worker: Context | None = None


class AsyncioAdapter(RuntimeAdapter):
    name = "asyncio"
    module = "asyncio"

    def __init__(self) -> None:
        self._cache = _LoopCache()

    def version(self) -> str:
        return platform.python_version()

    def detect_loop(self) -> Context | None:
        loop = _get_running_loop()
        if loop is None:
            return None
        snapshots = self._cache.get(loop) or self._cache.store(loop, AsyncioToken(loop))
        return snapshots.in_callback if current_task(loop) is None else snapshots.task()

    def detect_worker(self) -> Context | None:
        thread = threading.current_thread()
        if getattr(thread, "_target", None) is not _cf_thread._worker:
            return None
        cache = self._cache
        if cache.worker is not None:
            return cache.worker
        executor = thread._args[0]()  # type: ignore[attr-defined]
        prefix = str(getattr(executor, "_thread_name_prefix", ""))
        if not prefix.startswith(_DEFAULT_EXECUTOR_PREFIXES):
            # Some pool's thread: a worker, but its owner is not known (the pool
            # may serve many loops, or none).
            return _POOL_WORKER
        loop = _owner_loop()
        if loop is None:
            return _POOL_WORKER  # a loop's default executor used directly: owner unknown
        # A default executor serves its loop for life: cache for the thread.
        cache.worker = ctx = worker_context("asyncio", AsyncioToken(loop))
        return ctx

    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        portals: bool = False,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Any,
    ) -> T:
        # asyncio.run, with an explicit loop factory (never the global
        # event-loop policy) and the runner's cleanup.
        runner = AsyncioRunner(loop_factory=loop_factory, debug=options.get("debug"))
        if portals:
            from bridge._portal import install_asyncio_portals

            install_asyncio_portals(runner.loop)
        try:
            return runner.loop.run_until_complete(_as_coroutine(async_fn, args))
        finally:
            runner.close()

    def pet_options(self) -> dict[str, Any]:
        # Its work comes from other threads: wake-ups through a queue, not a
        # socket, while it has no I/O of its own.
        from ._quiet_loop import QuietEventLoop

        return {"loop_factory": QuietEventLoop}

    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        loop: asyncio.AbstractEventLoop = token._loop  # type: ignore[attr-defined]
        # What deliver_* read, set before the task's first step (which may
        # run at once, inside _start_task).
        future.runtime, future._token = "asyncio", token
        if future._cancel_requested:
            # cancel() came between the claim and now: nothing ran yet.
            future.deliver_cancelled("an asyncio task")
            return
        task, stepped = _start_task(loop, _run_work(work, context, future), context)
        if not stepped:
            # The first step waits for the loop's next turn; a cancellation
            # thrown in before it would skip _run_work's body: watch the end.
            task.add_done_callback(functools.partial(_deliver_unstarted, future))
        future.start(token, task.cancel)  # once done already, a no-op

    async def await_future(
        self,
        future: concurrent.futures.Future[T],
        *,
        abandon_on_cancel: bool = False,
        start: Callable[[], object] | None = None,
    ) -> T:
        # One loop future, completed by one call_soon_threadsafe from the
        # future's done callback (directly, when that runs on this loop's
        # thread, or when ``future`` is done already: then nothing waits).
        # ``wake`` reads ``waiter`` when it runs, on this thread, so a waiter
        # made anew after a cancellation is the one it completes.
        loop = asyncio.get_running_loop()
        task = _task_of(loop)
        waiter = loop.create_future()
        loop_thread = get_ident()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        def wake_now() -> None:
            # A callback of its own: the task's next step is taken right
            # here, not on the loop's next turn (see _StepNow).
            if waiter.done():
                return
            if task is None or not _StepNow.usable(loop):
                waiter.set_result(None)
                return
            now = _StepNow(loop)
            loop.call_soon = now  # type: ignore[method-assign,assignment]
            try:
                waiter.set_result(None)
            finally:
                del loop.call_soon
            now.run(task)

        def on_done(_: object) -> None:
            if get_ident() == loop_thread:
                wake()
                return
            try:  # noqa: SIM105 - contextlib.suppress costs a call, on the worker's side
                loop.call_soon_threadsafe(wake_now)
            except RuntimeError:  # the loop closed meanwhile
                pass

        future.add_done_callback(on_done)
        if start is not None:
            start()
        try:
            await waiter
        except asyncio.CancelledError:
            # Ask the work to stop, and (unless abandoning it) wait until it
            # has: its cleanup runs before this task finishes cancelling.
            future.cancel()
            while not abandon_on_cancel:
                waiter = loop.create_future()
                if future.done():  # after the new waiter: wake() sees one or the other
                    break
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError from None

    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:  # not the builtin one before Python 3.11
            raise TimeoutError(f"the work did not finish within {seconds} s") from None

    def cancel_exception(self) -> BaseException:
        return asyncio.CancelledError()

    def current_task_name(self) -> str | None:
        task = current_task()
        return None if task is None else task.get_name()

    async def await_pet_future(self, future: Any) -> Any:
        # One loop future per park, completed by the waker.
        loop = asyncio.get_running_loop()
        waker = _LoopWaker(loop)

        def park() -> asyncio.Future[None]:
            waker.waiter = waiter = loop.create_future()
            return waiter

        try:
            return await drive_in_host(future, waker, park)
        finally:
            waker.waiter = None

    def new_runner(self, **options: Any) -> Runner:
        return AsyncioRunner(**options)

    def token_for(self, native: Any) -> Token:
        return AsyncioToken(native)


class _LoopWaker(HostWaker):
    """Wakes a task of ``loop`` parked in ``await_pet_future``: directly on
    the loop's thread, through ``call_soon_threadsafe`` from any other."""

    __slots__ = ("loop", "thread", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = get_ident()
        self.waiter: asyncio.Future[None] | None = None
        self.woken = False

    def wake(self) -> None:
        if get_ident() == self.thread:
            self.wake_here()
            return
        try:  # noqa: SIM105 - contextlib.suppress costs a call on the waking side
            self.loop.call_soon_threadsafe(self.wake_here)
        except RuntimeError:  # the loop closed meanwhile: nothing waits any more
            pass

    def wake_here(self) -> None:
        waiter = self.waiter
        if waiter is None:
            self.woken = True  # woken during its own poll: poll again at once
        elif not waiter.done():
            waiter.set_result(None)

    def will_wake(self, other: Waker) -> bool:
        return self is other


def _create_task(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[T]], context: contextvars.Context
) -> asyncio.Task[T]:
    """A task of ``loop`` running ``work()`` with every step in ``context``."""
    if _TASK_TAKES_CONTEXT:
        return loop.create_task(work(), context=context)  # type: ignore[arg-type,call-arg,unused-ignore]
    # Python 3.10: a task copies the context; run each step in ours.
    coro = InContext(work(), context)  # type: ignore[arg-type]
    return loop.create_task(_as_coroutine(lambda: coro, ()))


async def _run_work(
    work: Callable[[], Awaitable[T]], context: contextvars.Context, future: WorkFuture[T]
) -> None:
    # The work's task delivers its own outcome, in the step that ends it (no
    # done callback, so no extra turn of the loop before the caller wakes).
    try:
        if _TASK_TAKES_CONTEXT:
            value = await work()
        else:  # Python 3.10: the task copied a context; run each step in ours
            value = await InContext(context.run(work), context)  # type: ignore[arg-type]
    except asyncio.CancelledError:
        future.deliver_cancelled("an asyncio task")
        raise
    except Exception as error:
        future.deliver_error(error)  # delivered: the task itself ends quietly
    except GeneratorExit:
        # The task was dropped unfinished (its loop closed under it).
        future.deliver_error(RunFinishedError(f"{future.label}: the asyncio run ended under it."))
        raise
    except BaseException as error:  # KeyboardInterrupt, SystemExit: the loop sees them too
        future.deliver_error(error)
        raise
    else:
        future.deliver_value(value)


def _deliver_unstarted(future: WorkFuture[Any], task: asyncio.Task[None]) -> None:
    # A task cancelled before its first step never ran _run_work's body.
    if not future.done() and task.cancelled():
        future.deliver_cancelled("an asyncio task")


#: The loop's task factory could not be read (uvloop keeps it private).
_UNKNOWN_FACTORY: Any = object()


def _start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None], context: contextvars.Context
) -> tuple[asyncio.Task[None], bool]:
    """A task of ``loop`` for ``coro`` (steps in ``context`` where the Python
    can), whose first step runs now when it can: one turn of the loop less.
    Returns the task and whether its first step ran.

    Python 3.12+: ``eager_start``, for a loop without a task factory or with
    the bridge's portal factory alone (which passes it on). Otherwise (3.10,
    3.11, a user's factory) the task is made as ``loop.create_task`` makes
    it, and on asyncio's own loops its first step runs right here instead of
    on the loop's next turn (see ``_StepNow``).
    """
    factory: Any = getattr(loop, "_task_factory", _UNKNOWN_FACTORY)
    task: asyncio.Task[None]
    if _EAGER_START:
        if factory is _UNKNOWN_FACTORY:
            factory = type(loop).get_task_factory(loop)
        if factory is None:
            task = asyncio.Task(coro, loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            return task, _get_running_loop() is loop
        if _takes_eager_start(factory):
            task = factory(loop, coro, context=context, eager_start=True)
            return task, _get_running_loop() is loop
    if factory is _UNKNOWN_FACTORY or not _StepNow.usable(loop):
        return _make_task(loop, factory, coro, context), False
    now = _StepNow(loop)
    loop.call_soon = now  # type: ignore[method-assign,assignment]
    try:
        if factory is None and _TASK_TAKES_CONTEXT:  # the common case, inline
            task = asyncio.Task(coro, loop=loop, context=context)  # type: ignore[call-arg,unused-ignore]
        else:
            task = _make_task(loop, factory, coro, context)
    finally:
        del loop.call_soon
    return task, now.run(task)


def _make_task(
    loop: asyncio.AbstractEventLoop,
    factory: Any,
    coro: Coroutine[Any, Any, None],
    context: contextvars.Context,
) -> asyncio.Task[None]:
    # As loop.create_task makes it, without its checks (we run on the loop).
    # Python 3.10 takes no context: its task copies one (see _run_work).
    task: asyncio.Task[None]
    if not _TASK_TAKES_CONTEXT:
        if factory is None:
            task = asyncio.Task(coro, loop=loop)
        elif factory is _UNKNOWN_FACTORY:
            task = loop.create_task(coro)
        else:
            task = factory(loop, coro)
    elif factory is None:
        task = asyncio.Task(coro, loop=loop, context=context)  # type: ignore[call-arg,unused-ignore]
    elif factory is _UNKNOWN_FACTORY:
        task = loop.create_task(coro, context=context)  # type: ignore[call-arg,unused-ignore]
    else:
        task = factory(loop, coro, context=context)
    return task


class _StepNow:
    """Eager start, and eager wake-up, for the Pythons (and task factories)
    without them: a task's step that something is about to queue is taken at
    once instead, as the loop would have taken it on its next turn.

    Set as ``loop.call_soon`` (an instance attribute over the class's method)
    while the task is made, or the future it waits on completes, then
    ``run(task)``. For that moment, on the loop's thread, it keeps the first call
    queueing a task's step (a callable bound to a task: the constructor's
    first step, or the wake-up a future's completion queues) instead of
    queueing it, and passes any other call on to the real ``call_soon``.
    ``run`` takes the kept step, in its context, if it is ``task``'s and
    nothing else was queued meanwhile; otherwise queues it after all, in
    order. Either way the step runs exactly once. No handle is made, queued
    and taken out again: that is the point (a microsecond on Python 3.11).

    Only where ``usable``: asyncio's own loops (uvloop's ``call_soon`` cannot
    be stood in for), on the loop's thread, while no task is stepping (a
    step inside a step fails).
    """

    __slots__ = ("args", "context", "loop", "other", "step")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.step: Callable[..., object] | None = None
        self.args: tuple[Any, ...] = ()
        self.context: contextvars.Context | None = None
        self.other = False

    @staticmethod
    def usable(loop: asyncio.AbstractEventLoop) -> bool:
        return (
            hasattr(loop, "_ready")
            and _get_running_loop() is loop
            and _task_of(loop) is None
            and "call_soon" not in vars(loop)
        )

    def __call__(
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle | None:
        if self.step is None and isinstance(getattr(callback, "__self__", None), asyncio.Task):
            self.step, self.args, self.context = callback, args, context
            return None  # the task machinery ignores the handle
        self.other = True
        loop = self.loop
        return type(loop).call_soon(loop, callback, *args, context=context)

    def run(self, task: asyncio.Task[Any]) -> bool:
        """Take the kept step now if it is ``task``'s; say whether it did."""
        step, args, context = self.step, self.args, self.context
        if step is None:
            return False
        if self.other or getattr(step, "__self__", None) is not task:
            loop = self.loop
            type(loop).call_soon(loop, step, *args, context=context)
            return False
        if context is None:
            step(*args)
        else:
            context.run(step, *args)
        return True


def _takes_eager_start(factory: Callable[..., object]) -> bool:
    # The portal factory with no factory of the user's inside hands its
    # keyword arguments to asyncio.Task.
    portal = sys.modules.get("bridge._portal")
    portal_factory = getattr(portal, "_PortalTaskFactory", None)
    return (
        portal_factory is not None
        and type(factory) is portal_factory
        and getattr(factory, "inner", True) is None
    )


def _stop_loop(task: asyncio.Future[Any]) -> None:
    task.get_loop().stop()


def _nothing() -> None:
    return None


class AsyncioRunner(Runner):
    """An asyncio loop kept on one thread between calls (``asyncio.Runner``'s
    idea, with the loop made by an explicit factory, never the policy)."""

    def __init__(
        self,
        *,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        debug: bool | None = None,
    ) -> None:
        self._loop = (loop_factory or asyncio.new_event_loop)()
        if debug is not None:
            self._loop.set_debug(debug)
        self._token = AsyncioToken(self._loop)
        self._task: asyncio.Task[Any] | None = None
        #: The task step_now started and left pending, for run to go on with.
        self._started: asyncio.Task[Any] | None = None

    @property
    def token(self) -> Token:
        return self._token

    def run(
        self,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        deadline: float | None,
        cleanup_s: float,
    ) -> Outcome:
        loop = self._loop
        task = self._started or _create_task(loop, work, context)
        self._task, self._started = task, None
        timer: asyncio.TimerHandle | None = None

        def on_deadline() -> None:
            nonlocal timer
            task.cancel()
            timer = loop.call_later(cleanup_s, loop.stop)

        if deadline is not None:
            timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), on_deadline)
        task.add_done_callback(_stop_loop)
        try:
            loop.run_forever()
        finally:
            task.remove_done_callback(_stop_loop)
            if timer is not None:
                timer.cancel()
            self._task = None
        return _outcome(task)

    def step_now(
        self, work: Callable[[], Awaitable[Any]], context: contextvars.Context
    ) -> Outcome | None:
        # What run_forever sets up around a turn of the loop, around one
        # step: the loop is this thread's running loop, with its async
        # generator hooks. asyncio's own loops only (uvloop's run_forever
        # cannot be mirrored), not in debug mode (its checks and warnings
        # belong to a real turn), and not while the loop runs already.
        loop = self._loop
        if not hasattr(loop, "_asyncgen_firstiter_hook") or loop.get_debug() or loop.is_running():
            return None
        hooks = sys.get_asyncgen_hooks()
        loop._thread_id = get_ident()  # type: ignore[attr-defined]
        sys.set_asyncgen_hooks(
            firstiter=loop._asyncgen_firstiter_hook,
            finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
        )
        _set_running_loop(loop)
        try:
            if _TASK_TAKES_CONTEXT:
                coro: Any = work()
            else:  # Python 3.10: see _create_task
                in_context = InContext(work(), context)  # type: ignore[arg-type]
                coro = _as_coroutine(lambda: in_context, ())
            task, _ = _start_task(loop, coro, context)
        finally:
            _set_running_loop(None)
            sys.set_asyncgen_hooks(*hooks)
            loop._thread_id = None  # type: ignore[attr-defined]
        if not task.done():
            self._started = task
            return None
        return _outcome(task)

    def cancel_current(self) -> None:
        task = self._task or self._started
        if task is not None:
            task.cancel()
            self._loop.call_soon_threadsafe(_nothing)  # wake the selector

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close(self) -> None:
        loop = self._loop
        if loop.is_closed():
            return
        mark_run_ending(loop)  # work cancelled from here on: the run ended
        try:
            asyncio.runners._cancel_all_tasks(loop)  # type: ignore[attr-defined]
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _outcome(task: asyncio.Task[Any]) -> Outcome:
    if not task.done():
        return ("pending", None)
    if task.cancelled():
        return ("cancelled", None)
    error = task.exception()
    return ("error", error) if error is not None else ("value", task.result())


def _owner_loop() -> asyncio.AbstractEventLoop | None:
    """The loop awaiting the work item this pool thread runs, if any.

    ``run_in_executor`` submits the call and then chains the executor's future
    to an asyncio future; the chain's callback names the loop. The worker may
    start before the chain exists (a new thread often does): wait, bounded, for it.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code is not _WORK_ITEM_RUN:
        frame = frame.f_back
    if frame is None:
        return None
    item = frame.f_locals["self"]
    deadline = time.monotonic() + _CHAIN_WAIT_S
    while True:
        for callback in list(item.future._done_callbacks):
            code = getattr(callback, "__code__", None)
            if code is _CALL_SET_STATE:
                cells = dict(zip(code.co_freevars, callback.__closure__, strict=True))
                loop: asyncio.AbstractEventLoop | None = cells["dest_loop"].cell_contents
                return loop
        if time.monotonic() > deadline:
            return None
        time.sleep(0.0005)


Adapter = AsyncioAdapter
