"""asyncio (and uvloop) behind the adapter interface."""

from __future__ import annotations

import asyncio
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

from bridge._context import HOSTED_LOOPS, Context, Token, worker_context
from bridge._errors import RunFinishedError
from bridge._registry import RuntimeAdapter

T = TypeVar("T")


async def _as_coroutine(async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await async_fn(*args)


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


class _LoopCache(threading.local):
    # The last loop seen on this thread and its two snapshots (in a task, in a
    # callback). A weak reference: a cache must not keep a closed loop alive.
    loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
    in_task: Context | None = None
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
            hosted = loop in HOSTED_LOOPS
            common: dict[str, Any] = {"role": "event_loop", "hosted": hosted, "can_block": False}
            cache.in_task = Context(runtime="asyncio", in_task=True, token=token, **common)
            cache.in_callback = Context(runtime="asyncio", in_task=False, token=token, **common)
            cache.loop_ref = weakref.ref(loop)
        return cache.in_task if current_task(loop) is not None else cache.in_callback

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
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **options: Any,
    ) -> T:
        # asyncio.run's cleanup, with an explicit loop factory (never the
        # global event-loop policy).
        loop = (loop_factory or asyncio.new_event_loop)()
        try:
            if options.get("debug") is not None:
                loop.set_debug(options["debug"])
            return loop.run_until_complete(_as_coroutine(async_fn, args))
        finally:
            try:
                asyncio.runners._cancel_all_tasks(loop)  # type: ignore[attr-defined]
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def token_for(self, native: Any) -> Token:
        return AsyncioToken(native)


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
