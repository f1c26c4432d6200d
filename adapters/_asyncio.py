"""asyncio (and uvloop) behind the adapter interface."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import platform
import sys
import threading
import time
import weakref
from asyncio import current_task
from asyncio.events import _get_running_loop
from collections.abc import Awaitable, Callable
from concurrent.futures import thread as _cf_thread
from types import CodeType, FrameType
from typing import Any, TypeVar

from bridge._context import (
    Context,
    Token,
    mark_run_ending,
    on_pet_thread,
    seen_run,
    worker_context,
)
from bridge._errors import RunFinishedError
from bridge._registry import Outcome, Runner, RuntimeAdapter
from bridge._work import InContext, WorkFuture

T = TypeVar("T")


async def _as_coroutine(async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await async_fn(*args)


# Python 3.11+ runs a task in a given context (so changes land in it).
_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)

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


def _in_portal() -> bool:
    # A greenlet portal can exist only once bridge._portal is imported (lazily:
    # it imports greenlet, which importing bridge must not).
    portal = sys.modules.get("bridge._portal")
    return portal is not None and portal.has_portal() is True


class _LoopCache(threading.local):
    # The last loop seen on this thread and its two snapshots (in a task, in a
    # callback). A weak reference: a cache must not keep a closed loop alive.
    loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
    in_task: Context | None = None
    in_task_portal: Context | None = None
    in_callback: Context | None = None
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
        cache = self._cache
        ref = cache.loop_ref
        if ref is None or ref() is not loop:
            token = AsyncioToken(loop)
            seen_run(loop)
            hosted = on_pet_thread()
            common: dict[str, Any] = {"role": "event_loop", "hosted": hosted, "can_block": False}
            cache.in_task = Context(runtime="asyncio", in_task=True, token=token, **common)
            cache.in_task_portal = Context(
                runtime="asyncio", in_task=True, portal=True, token=token, **common
            )
            cache.in_callback = Context(runtime="asyncio", in_task=False, token=token, **common)
            cache.loop_ref = weakref.ref(loop)
        if current_task(loop) is None:
            return cache.in_callback
        return cache.in_task_portal if _in_portal() else cache.in_task

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

    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        loop: asyncio.AbstractEventLoop = token.native  # type: ignore[assignment]
        task = _create_task(loop, work, context)
        future.start(token, task.cancel)
        task.add_done_callback(lambda t: _deliver(t, future))

    async def await_future(
        self, future: concurrent.futures.Future[T], *, abandon_on_cancel: bool = False
    ) -> T:
        waiter = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(waiter)
        except asyncio.CancelledError:
            # Ask the work to stop, and (unless abandoning it) wait until it
            # has: its cleanup runs before this task finishes cancelling.
            future.cancel()
            while not abandon_on_cancel and not waiter.done():
                try:
                    await asyncio.shield(waiter)
                except asyncio.CancelledError:
                    continue
                except BaseException:
                    break
            raise

    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:  # not the builtin one before Python 3.11
            raise TimeoutError(f"the work did not finish within {seconds} s") from None

    def cancel_exception(self) -> BaseException:
        return asyncio.CancelledError()

    def new_runner(self, **options: Any) -> Runner:
        return AsyncioRunner(**options)

    def token_for(self, native: Any) -> Token:
        return AsyncioToken(native)


def _create_task(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[T]], context: contextvars.Context
) -> asyncio.Task[T]:
    """A task of ``loop`` running ``work()`` with every step in ``context``."""
    if _TASK_TAKES_CONTEXT:
        return loop.create_task(work(), context=context)  # type: ignore[arg-type,call-arg,unused-ignore]
    # Python 3.10: a task copies the context; run each step in ours.
    coro = InContext(work(), context)  # type: ignore[arg-type]
    return loop.create_task(_as_coroutine(lambda: coro, ()))


def _stop_loop(task: asyncio.Future[Any]) -> None:
    task.get_loop().stop()


def _nothing() -> None:
    return None


def _deliver(task: asyncio.Task[T], future: WorkFuture[T]) -> None:
    if task.cancelled():
        future.deliver_cancelled("an asyncio task")
        return
    error = task.exception()
    if error is not None:
        future.deliver_error(error)
    else:
        future.deliver_value(task.result())


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
        task = self._task = _create_task(loop, work, context)
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
        if not task.done():
            return ("pending", None)
        if task.cancelled():
            return ("cancelled", None)
        error = task.exception()
        return ("error", error) if error is not None else ("value", task.result())

    def cancel_current(self) -> None:
        task = self._task
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
