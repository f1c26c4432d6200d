"""Async calls sync: ``spawn_blocking``, its thread cache and capacity limiters.

Theory of operation. ``await spawn_blocking(fn)`` takes a token from a
capacity limiter (40 per run unless one is given), hands a job to an idle
thread of the library's own cache (or starts a thread), and awaits the job's
``WorkFuture`` natively in the caller's runtime (``adapter.await_future``).

The worker runs ``fn`` in a copy of the caller's context, with the "current
async library" marker reset (no loop runs in the worker), and with a
thread-local that names its owner: ``current_context()`` reports
``role="worker"`` and the owner's token, so a ``block_on`` inside routes back
to the owner's loop; ``check_cancelled()`` reads the job's cancel flag.

Idle threads wait on a lock of their own for the next job and exit after
``IDLE_TIMEOUT_S`` without one (trio's thread cache is the model).
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ._context import Context, Token, anyio_enter_worker, current_context, set_own_worker
from ._deadlock import CURRENT_WORK, Limiter, graph
from ._errors import Fix, NoRuntimeError
from ._registry import RuntimeAdapter, get
from ._work import WorkFuture, describe

T = TypeVar("T")

__all__ = ("CapacityLimiter", "check_cancelled", "spawn_blocking")

#: An idle worker thread exits after this long without a job.
IDLE_TIMEOUT_S = 10.0
#: Workers per run, by default.
DEFAULT_LIMIT = 40


class CapacityLimiter:
    """At most ``total`` concurrent borrowers, from any runtime and thread.

    Waiters are served first come, first served; a released token is handed
    straight to the next waiter.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"a CapacityLimiter needs total >= 1, got {total}")
        self.total = total
        self._lock = threading.Lock()
        self._borrowed = 0
        self._waiters: deque[Future[None]] = deque()
        self.node = Limiter(f"CapacityLimiter({total}) at {id(self):#x}")

    def __repr__(self) -> str:
        waiting = len(self._waiters)
        return f"<CapacityLimiter {self._borrowed}/{self.total} borrowed, {waiting} waiting>"

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {"total": self.total, "borrowed": self._borrowed, "waiting": len(self._waiters)}

    def try_acquire(self) -> bool:
        with self._lock:
            if self._borrowed < self.total and not self._waiters:
                self._borrowed += 1
                return True
            return False

    async def acquire(self, adapter: RuntimeAdapter) -> None:
        """Wait for a token in ``adapter``'s runtime."""
        if self.try_acquire():
            return
        with self._lock:
            if self._borrowed < self.total and not self._waiters:
                self._borrowed += 1
                return
            waiter: Future[None] = Future()
            self._waiters.append(waiter)
        try:
            work = CURRENT_WORK.get()
            if work is None:
                await adapter.await_future(waiter)
            else:
                with graph.waiting(work, self.node, f"{work.label}, waiting for {self.node.name}"):
                    await adapter.await_future(waiter)
        except BaseException:
            # Cancelled while waiting; if the token was handed over meanwhile,
            # pass it on rather than lose it.
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.set_running_or_notify_cancel():  # skip cancelled waiters
                    waiter.set_result(None)  # the token passes on: borrowed stays
                    return
            if self._borrowed <= 0:
                raise RuntimeError("CapacityLimiter.release() without a matching acquire")
            self._borrowed -= 1


_limiters_lock = threading.Lock()
_limiters: dict[Token, CapacityLimiter] = {}


def _run_limiter(token: Token) -> CapacityLimiter:
    limiter = _limiters.get(token)
    if limiter is None:
        with _limiters_lock:
            if len(_limiters) > 64:  # drop the limiters of runs that are over and idle
                for old in [t for t, lim in _limiters.items() if lim.statistics()["borrowed"] == 0]:
                    del _limiters[old]
            limiter = _limiters.setdefault(token, CapacityLimiter(DEFAULT_LIMIT))
    return limiter


class _Job:
    __slots__ = ("adapter", "args", "context", "fn", "future", "owner")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
        future: WorkFuture[Any],
        owner: Context,
        adapter: RuntimeAdapter,
    ) -> None:
        self.fn, self.args, self.context, self.future = fn, args, context, future
        self.owner, self.adapter = owner, adapter

    def run(self) -> None:
        future = self.future
        if not future.set_running_or_notify_cancel():
            return
        # Cancellation of a running job is cooperative: check_cancelled() sees it.
        future.start(None, _no_op)
        set_own_worker(self.owner, future)
        assert self.owner.token is not None
        leave = self.adapter.enter_worker(self.owner.token)
        leave_anyio = anyio_enter_worker(self.owner.runtime, self.owner.token)
        try:
            result = self.context.run(self.fn, *self.args)
        except BaseException as exc:
            future.deliver_error(exc)
        else:
            future.deliver_value(result)
        finally:
            leave_anyio()
            leave()
            set_own_worker(None, None)


def _no_op() -> None:
    return None


class _Worker:
    """One cached thread: runs jobs handed over through ``_wake``."""

    __slots__ = ("_job", "_wake")

    def __init__(self, job: _Job) -> None:
        self._job: _Job | None = job
        self._wake = threading.Lock()
        self._wake.acquire()
        threading.Thread(target=self._loop, name="bridge-worker", daemon=True).start()

    def hand(self, job: _Job) -> None:
        self._job = job
        self._wake.release()

    def _loop(self) -> None:
        while True:
            job = self._job
            assert job is not None
            self._job = None
            job.run()
            del job
            with _idle_lock:
                _idle.append(self)
            if self._wake.acquire(timeout=IDLE_TIMEOUT_S):
                continue
            with _idle_lock:
                try:
                    _idle.remove(self)
                except ValueError:
                    # A job was handed over just as the wait timed out.
                    pass
                else:
                    return
            self._wake.acquire()


_idle_lock = threading.Lock()
_idle: list[_Worker] = []


def _dispatch(job: _Job) -> None:
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        _Worker(job)
    else:
        worker.hand(job)


async def spawn_blocking(
    fn: Callable[..., T],
    *args: Any,
    abandon_on_cancel: bool = False,
    limiter: CapacityLimiter | None = None,
) -> T:
    """Run the sync function ``fn(*args)`` on a worker thread and await its
    result, under any runtime.

    Cancelling the awaiting task waits for ``fn`` to return (it can poll
    :func:`check_cancelled`), unless ``abandon_on_cancel=True``: then the task
    is cancelled at once and ``fn`` finishes on its own.
    """
    here = current_context()
    if here.role != "event_loop" or here.token is None or here.runtime is None:
        raise NoRuntimeError(
            f"spawn_blocking({describe(fn)}) needs a running event loop on this thread; "
            f"this thread is {here.role}.",
            fixes=(Fix(f"await bridge.spawn_blocking({describe(fn)})", f"{describe(fn)}()"),),
        )
    adapter = get(here.runtime)
    limiter = limiter or _run_limiter(here.token)
    await limiter.acquire(adapter)
    try:
        future: WorkFuture[T] = WorkFuture(describe(fn))
        context = contextvars.copy_context()
        context.run(_reset_async_marker)
        owner = Context(runtime=here.runtime, role="worker", hosted=here.hosted, token=here.token)
        graph.hold(limiter.node, future)
        try:
            _dispatch(_Job(fn, args, context, future, owner, adapter))
            return await adapter.await_future(future, abandon_on_cancel=abandon_on_cancel)
        finally:
            graph.release(limiter.node, future)
    finally:
        limiter.release()


def _reset_async_marker() -> None:
    # The copied context came from a task; inside the worker no loop runs.
    import sniffio

    sniffio.current_async_library_cvar.set(None)


def check_cancelled() -> None:
    """In a ``spawn_blocking`` worker: raise the owner's cancellation if the
    awaiting task was cancelled (cooperative cancellation)."""
    from ._context import own_worker_job

    job = own_worker_job()
    if job is None:
        raise NoRuntimeError(
            "check_cancelled() was called outside a spawn_blocking worker.",
            fixes=(
                Fix(
                    "bridge.check_cancelled()  # in plain code", "# only in spawn_blocking workers"
                ),
            ),
        )
    if job.cancel_requested:
        owner = current_context()
        assert owner.runtime is not None
        raise get(owner.runtime).cancel_exception()
