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
``IDLE_TIMEOUT_S`` without one (trio's thread cache is the model). A worker
puts itself back on the idle list *before* it delivers the job's outcome, so
that once the owner wakes, the worker has only its wait left to do.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
from _thread import get_ident
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeAlias, TypeVar

import sniffio

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
                _owners.clear()  # its entries name limiters: they look theirs up again
            limiter = _limiters.setdefault(token, CapacityLimiter(DEFAULT_LIMIT))
    return limiter


#: A job: (fn, args, context, future, owner's worker snapshot, adapter).
_Job: TypeAlias = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    contextvars.Context,
    WorkFuture[Any],
    Context,
    RuntimeAdapter,
]


class _Worker:
    """One cached thread: runs jobs handed over through ``_wake`` (the
    dispatcher sets ``_job``, then releases ``_wake``)."""

    __slots__ = ("_job", "_wake")

    def __init__(self, job: _Job) -> None:
        self._job: _Job | None = job
        self._wake = threading.Lock()
        self._wake.acquire()
        threading.Thread(target=self._loop, name="bridge-worker", daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self._job
            assert job is not None
            self._job = None
            fn, args, context, future, owner, adapter = job
            if future.claim():  # else cancelled before it started
                try:
                    ok, outcome = True, _run(fn, args, context, future, owner, adapter)
                except BaseException as exc:
                    ok, outcome = False, exc
                # Idle first, then deliver: once the owner wakes, all this
                # thread has left to do is its wait for the next job.
                _idle.append(self)
                if ok:
                    future.deliver_value(outcome)
                else:
                    future.deliver_error(outcome)
                del outcome
            else:
                _idle.append(self)
            del job, fn, args, context, future, owner, adapter
            if self._wake.acquire(timeout=IDLE_TIMEOUT_S):
                continue
            try:
                _idle.remove(self)  # atomic: a dispatcher pops atomically too
            except ValueError:
                # A job was handed over just as the wait timed out.
                self._wake.acquire()
            else:
                return


def _run(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    context: contextvars.Context,
    future: WorkFuture[Any],
    owner: Context,
    adapter: RuntimeAdapter,
) -> Any:
    """Run a job on this worker thread, as its owner's worker."""
    # Cancellation of a running job is cooperative: check_cancelled() sees it.
    future.thread_ident = get_ident()
    token = owner.token
    assert token is not None
    set_own_worker(owner, future)
    # The hooks, only where they do something (most adapters have none).
    leave = None
    if type(adapter).enter_worker is not RuntimeAdapter.enter_worker:
        leave = adapter.enter_worker(token)
    leave_anyio = None
    if "anyio" in sys.modules:
        leave_anyio = anyio_enter_worker(owner.runtime, token)
    try:
        return context.run(fn, *args)
    finally:
        if leave_anyio is not None:
            leave_anyio()
        if leave is not None:
            leave()
        set_own_worker(None, None)


def _dispatch(job: _Job) -> None:
    try:  # an idle worker (popped atomically), or a new one
        worker = _idle.pop()
    except IndexError:
        _Worker(job)
    else:
        worker._job = job
        worker._wake.release()


#: Idle workers. ``append``, ``pop`` and ``remove`` are each atomic: a worker
#: is either popped by one dispatcher or removes itself when it expires.
_idle: list[_Worker] = []


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
    entry = _owners.get(id(here))
    if entry is None or entry[0] is not here:
        entry = _owner_entry(here)
    _, owner, adapter, run_limiter = entry
    limiter = limiter or run_limiter
    if not limiter.try_acquire():
        await limiter.acquire(adapter)
    try:
        future: WorkFuture[T] = WorkFuture(describe(fn))
        context = contextvars.copy_context()
        # The copied context came from a task; inside the worker no loop runs.
        context.run(_ASYNC_MARKER.set, None)
        graph.hold(limiter.node, future)
        try:
            job: _Job = (fn, args, context, future, owner, adapter)
            return await adapter.await_future(
                future, abandon_on_cancel=abandon_on_cancel, start=functools.partial(_dispatch, job)
            )
        finally:
            graph.release(limiter.node, future)
    finally:
        limiter.release()


_ASYNC_MARKER = sniffio.current_async_library_cvar

#: Per snapshot of a loop thread (``current_context()``'s, cached per run):
#: (that snapshot, its workers' snapshot, the adapter, the run's limiter).
#: Keyed by id, checked by identity; bounded.
_owners: dict[int, tuple[Context, Context, RuntimeAdapter, CapacityLimiter]] = {}


def _owner_entry(here: Context) -> tuple[Context, Context, RuntimeAdapter, CapacityLimiter]:
    assert here.token is not None
    assert here.runtime is not None
    owner = Context(runtime=here.runtime, role="worker", hosted=here.hosted, token=here.token)
    entry = (here, owner, get(here.runtime), _run_limiter(here.token))
    if len(_owners) >= 256:
        _owners.clear()  # snapshots of runs long over
    _owners[id(here)] = entry
    return entry


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
