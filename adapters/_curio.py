"""curio behind the adapter interface.

curio has no public way to schedule work onto a kernel from another thread.
A curio token therefore runs a small daemon task inside the kernel (spawned,
on the kernel thread, the first time the kernel's token is asked for) that
waits on a ``concurrent.futures.Future``; another thread queues a callback
and completes that future, which curio turns into a wakeup of the task
through its own thread-safe wake queue. curio 1.6 is curio's last release,
so the kernel internals used here (the trap table's closures) are fixed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from importlib.metadata import version as _dist_version
from typing import Any, TypeVar

import curio
from curio import meta as _meta
from curio import thread as _curio_thread
from curio.traps import _future_wait, _get_kernel
from curio.workers import ThreadWorker

from bridge._context import HOSTED_LOOPS, Context, Token, worker_context
from bridge._errors import RunFinishedError
from bridge._registry import RuntimeAdapter

T = TypeVar("T")

_log = logging.getLogger("runtime_bridge.curio")
_TOKEN_ATTR = "_runtime_bridge_token"


def _kernel_closure(kernel: curio.Kernel, trap: str, name: str) -> Any:
    fn = kernel._traps[trap]
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__, strict=True))
    return cells[name].cell_contents


class CurioToken(Token):
    """Schedules callbacks onto one curio kernel through a service task."""

    __slots__ = ("__weakref__", "_closed", "_kernel", "_lock", "_queue", "_wakeup")
    runtime = "curio"

    def __init__(self, kernel: curio.Kernel) -> None:
        # Must run on the kernel's thread, inside one of its tasks.
        self._kernel = kernel
        self._lock = threading.Lock()
        self._queue: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._wakeup: Future[None] = Future()
        self._closed = False
        new_task = _kernel_closure(kernel, "trap_spawn", "new_task")
        task = new_task(self._serve())
        task.daemon = True

    @property
    def native(self) -> curio.Kernel:
        return self._kernel

    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RunFinishedError("the curio kernel this token belongs to has shut down.")
            self._queue.append((fn, args))
            if not self._wakeup.done():
                self._wakeup.set_result(None)

    async def _serve(self) -> None:
        try:
            while True:
                await _future_wait(self._wakeup)
                with self._lock:
                    self._wakeup = Future()
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


class _KernelCache(threading.local):
    kernel: object = None
    in_task: Context | None = None
    in_callback: Context | None = None


class CurioAdapter(RuntimeAdapter):
    name = "curio"
    module = "curio"

    def __init__(self) -> None:
        self._cache = _KernelCache()

    def version(self) -> str:
        return _dist_version("curio")

    def detect_loop(self) -> Context | None:
        # A threading.local's __dict__ is this thread's: no AttributeError cost.
        kernel = (
            _meta._locals.__dict__.get("kernel") if _meta._locals.__dict__.get("running") else None
        )
        if kernel is None:
            return None
        cache = self._cache
        if cache.kernel is not kernel:
            common: dict[str, Any] = {
                "runtime": "curio",
                "role": "event_loop",
                "hosted": kernel in HOSTED_LOOPS,
                "token": kernel_token(kernel),
                "can_block": False,
            }
            # curio itself has no loop callbacks (sync code on the kernel thread
            # runs in a task's step); callbacks sent through a token are ours.
            cache.in_task = Context(in_task=True, **common)
            cache.in_callback = Context(in_task=False, **common)
            cache.kernel = kernel
        return cache.in_callback if _in_callback.flag else cache.in_task

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

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, **options: Any) -> T:
        result: T = curio.run(async_fn, *args, **options)
        return result

    def token_for(self, native: Any) -> Token:
        return kernel_token(native)


Adapter = CurioAdapter
