"""The pet executor: one run of any runtime, hosted on a daemon thread of its own.

Theory of operation. A ``PetExecutor`` starts its thread lazily, on the first
call. The thread runs ``adapter.run(self._serve)``: the run's main task
publishes the run's token, then waits for the stop signal (a
``concurrent.futures.Future``). Every call is a :class:`WorkFuture` put in
its run's ``pending`` set (it leaves the set when done) and in the run's
inbox; the call that finds the inbox idle schedules one ``_drain`` through
the token, and on the pet's thread ``_drain`` starts everything the inbox
holds, each as a task of its own (``adapter.spawn_work``). Many callers at
once: one wake-up of the loop for a batch of calls.

No call is stranded in the inbox: ``_drain`` clears the run's ``scheduled``
flag *before* it empties the inbox, and a caller appends *before* it reads
the flag, so (the GIL orders the two threads' steps) either the caller sees
the flag clear and schedules a drain, or a drain still to run will find its
call. When the run ends, the pet marks it closed (``open``) *before* its
thread takes its last look at the run's pending calls, and a caller looks at
that mark *after* adding its call: either the thread's last look finds the
call, or the caller sees the mark and fails the call itself. A run marked
closed takes no new calls: the next call starts a new run (on a new thread),
even while the old run's thread still winds down; each run fails only its
own leftovers.

Exactly one outcome per call, whatever happens:
- the task ends: its value, error or (requested) cancellation;
- ``close()``: work not started ends with ``PetClosedError``; running work is
  cancelled, its cleanup runs, then it ends with ``PetClosedError``;
- the thread dies or the run ends with work still pending (callbacks a
  closing loop dropped): the thread's last act fails whatever is left;
- ``fork``: the child fails every inherited pending call and forgets the
  inherited run without closing it (see ``_after_fork_in_child``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, TypeVar

from bridge._block_on import refuse_blocking_here, wait_done, wait_submitted
from bridge._context import Token, current_context, mark_pet_thread, owned_run
from bridge._deadlock import CURRENT_WORK
from bridge._errors import Fix, PetClosedError, RunFinishedError
from bridge._registry import get
from bridge._work import WorkFuture, WorkItem, as_async_callable, describe

T = TypeVar("T")

__all__ = ("PetExecutor",)

#: How long a pet may take to start its run before the caller gives up.
_START_TIMEOUT_S = 30.0
#: How long close() waits for cancelled work to clean up, by default.
CLOSE_TIMEOUT_S = 5.0

_names = itertools.count(1)
_live: weakref.WeakSet[PetExecutor] = weakref.WeakSet()


class _Started:
    """What the pet thread reports once its run is up (or why it is not)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.run: _Run | None = None
        self.error: BaseException | None = None


class _Run:
    """One run of a pet, as its callers see it: the token, its pending calls,
    the inbox of calls not started yet, whether a ``_drain`` is scheduled,
    and whether the run still takes calls (cleared when it starts to end)."""

    __slots__ = ("inbox", "open", "pending", "scheduled", "thread_ident", "token")

    def __init__(self, token: Token, thread_ident: int) -> None:
        self.token = token
        self.thread_ident = thread_ident
        self.pending: set[WorkFuture[Any]] = set()
        self.inbox: deque[WorkItem] = deque()
        self.scheduled = False
        self.open = True


class PetExecutor:
    """One run of ``runtime`` on a daemon thread of its own, started lazily.

    ``runtime_options`` go to the runtime's run (for asyncio:
    ``loop_factory=uvloop.new_event_loop``, ``debug=True``).
    """

    def __init__(
        self, runtime: str = "asyncio", *, name: str | None = None, **runtime_options: Any
    ):
        self.runtime = runtime
        self._adapter = get(runtime)  # unknown or unavailable: fail here, clearly
        self._options = runtime_options
        self.name = name or f"pet-{runtime}-{next(_names)}"
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._token: Token | None = None
        self._run: _Run | None = None
        self._stop: WorkFuture[float] | None = None
        self._death: BaseException | None = None
        self._submit_api = f"{type(self).__name__}.submit"
        self._call_api = f"{self.name}.call"
        _live.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running() else "idle"
        return f"<PetExecutor {self.name} runtime={self.runtime!r} {state}>"

    # -- lifecycle ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._token is not None

    def _ensure_started(self) -> _Run:
        run = self._run
        if run is not None and run.open and not self._closed:
            return run  # the common case: no lock
        with self._lock:
            if self._closed:
                raise self._closed_error("the pet is closed")
            if self._running() and self._run is not None and self._run.open:
                return self._run
            started = _Started()
            thread = threading.Thread(
                target=self._thread_main, args=(started,), name=self.name, daemon=True
            )
            self._thread, self._token, self._run, self._death = thread, None, None, None
            thread.start()
            if not started.event.wait(_START_TIMEOUT_S) or started.run is None:
                error = started.error or RuntimeError(f"{self.name} did not start in time")
                raise PetClosedError(
                    f"{self.name} could not start its {self.runtime} run: {error!r}."
                ) from error
            self._token = started.run.token
            self._run = started.run
            return started.run

    def _thread_main(self, started: _Started) -> None:
        mark_pet_thread()
        death: BaseException | None = None
        try:
            with owned_run(self.runtime):
                options = {**self._adapter.pet_options(), **self._options}
                self._adapter.run(self._serve, started, portals=True, **options)
        except BaseException as exc:
            started.error = death = exc
        finally:
            started.event.set()
            run = started.run
            if run is not None:
                run.open = False  # before the last look at its pending calls
                with self._lock:
                    if self._run is run:  # not a newer run already
                        self._token, self._death = None, death
                left = list(run.pending)
                reason = "closed" if self._closed else f"its thread ended ({death!r})"
                for future in left:
                    future.deliver_error(
                        self._closed_error(f"the pet {reason} before the call finished")
                    )

    async def _serve(self, started: _Started) -> None:
        token = current_context().token
        assert token is not None
        stop: WorkFuture[float] = WorkFuture("stop")
        self._stop = stop
        run = started.run = _Run(token, threading.get_ident())
        started.event.set()
        try:
            await self._adapter.await_future(stop)
        finally:
            # The run takes no new calls from here on (the next call starts a
            # new run). Closing: cancel what runs and wait (bounded) for its
            # cleanup; calls queued but not started end with PetClosedError.
            # Not closing: the run is ending under us (its loop was stopped);
            # it cancels every task itself, each call then ends with
            # RunFinishedError, and this thread fails whatever is left.
            run.open = False
            closing = stop.done() and not stop.cancelled()
            pending = list(run.pending) if closing else []
            error = self._closed_error("the pet was closed while the call was pending")
            for future in pending:
                future.cancel_for_close(error)
            bound = stop.result() if closing else CLOSE_TIMEOUT_S
            deadline = time.monotonic() + bound
            for future in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # The runtime's own timer, not a thread per call.
                with contextlib.suppress(Exception):
                    await self._adapter.timeout(
                        remaining, self._adapter.await_future(future, abandon_on_cancel=True)
                    )

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the pet: pending work is cancelled, its cleanup runs (for up to
        ``timeout`` seconds), and every call made gets exactly one outcome.
        Calls after close raise :class:`~bridge.PetClosedError`. Idempotent."""
        with self._lock:
            self._closed = True
            thread, stop = self._thread, self._stop
        if thread is None or stop is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError(f"{self.name}.close() called on the pet's own thread")
        with self._lock:
            if not stop.done():
                stop.set_running_or_notify_cancel()
                stop.set_result(timeout)
        thread.join(timeout + 1.0)

    def __enter__(self) -> PetExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _closed_error(self, what: str) -> PetClosedError:
        return PetClosedError(
            f"{self.name} ({self.runtime}): {what}.",
            fixes=(
                Fix(f"{self.name}.close(); {self.name}.call(work)", "make the call before close()"),
                Fix("a_closed_pet.call(work)", f'bridge.pet("{self.runtime}").call(work)'),
            ),
        )

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it
        left = list(self._run.pending) if self._run is not None else []
        if self._token is not None:
            _FORK_ORPHANS.append(self._token.native)
        self._thread = self._token = self._stop = self._run = None
        for future in left:
            future.deliver_error(
                self._closed_error("the process forked; the pet's run stayed in the parent")
            )

    # -- calls ----------------------------------------------------------------

    def submit(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> WorkFuture[T]:
        """Start ``async_fn(*args)`` as a task of the pet's run; return a
        ``concurrent.futures.Future`` whose ``cancel()`` cancels the task (the
        future ends cancelled once the task's cleanup ran)."""
        work = as_async_callable(async_fn, args, api=self._submit_api)
        return self.submit_work(work, contextvars.copy_context(), describe(async_fn))

    def submit_work(
        self, work: Callable[[], Awaitable[T]], context: contextvars.Context, label: str
    ) -> WorkFuture[T]:
        """``submit`` for work already normalised, running in ``context``."""
        run = self._run
        if run is None or not run.open or self._closed:
            run = self._ensure_started()
        future: WorkFuture[T] = WorkFuture(f"{label} on {self.name}")
        future.thread_ident = run.thread_ident
        context.run(CURRENT_WORK.set, future)  # bind_work, inline
        pending = future._pending_in = run.pending
        pending.add(future)  # it leaves the set when done, whichever way
        run.inbox.append((work, context, future))
        if not run.scheduled:
            run.scheduled = True
            try:
                run.token.run_sync_soon_threadsafe(self._drain, run)
            except RunFinishedError:
                # The run is ending: its thread fails what it has left.
                future.deliver_error(self._closed_error("the pet's run ended"))
        if not run.open:  # the run is over and its thread took its last look
            future.deliver_error(self._closed_error("the pet's run ended"))
        return future

    def _drain(self, run: _Run) -> None:
        # On the pet's thread: start every call in the inbox. The flag is
        # cleared first: a call appended from now on either is popped below
        # or schedules a drain of its own.
        run.scheduled = False
        inbox = run.inbox
        token = run.token
        spawn_work = self._adapter.spawn_work
        escaped: BaseException | None = None
        while inbox:
            work, context, future = inbox.popleft()
            if not future.claim():
                continue  # cancelled before it started, or failed already (a close)
            if self._closed:
                future.deliver_error(
                    self._closed_error("the pet was closed before the call started")
                )
                continue
            try:
                spawn_work(token, work, context, future)
            except Exception as exc:
                future.deliver_error(exc)
            except BaseException as exc:  # the work's own, out of a first step taken at once
                future.deliver_error(exc)
                escaped = escaped or exc
        if escaped is not None:
            raise escaped  # as the task's own step would have: the loop sees it

    def call(
        self, async_fn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None
    ) -> T:
        """Run ``async_fn(*args)`` on the pet and block until it is done.

        Follows the ``block_on`` table: from a loop thread without a portal it
        raises :class:`~bridge.BlockingInLoopError`. ``timeout`` cancels the
        work, waits (bounded) for its cleanup, then raises ``TimeoutError``.
        """
        what = describe(async_fn)
        here = refuse_blocking_here(self._call_api, what)
        work = as_async_callable(async_fn, args, api=self._submit_api)
        future = self.submit_work(work, contextvars.copy_context(), what)
        return wait_submitted(here, future, timeout, what)

    def iterate(self, async_iterable: AsyncIterable[T]) -> Iterator[T]:
        """Iterate ``async_iterable`` from sync code; every step runs in one
        dedicated task of the pet (an async generator that opens a nursery or
        a timeout keeps working). Closing or abandoning the iterator closes
        the async iterator on the pet, by its runtime's rules."""
        refuse_blocking_here(f"{self.name}.iterate", describe(async_iterable))
        session = _Session(self, f"iterating {describe(async_iterable)}")
        iterator = aiter(async_iterable)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            session.on_abandon = lambda _: aclose()
        try:
            while True:
                try:
                    item = session.request(iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            session.on_abandon = None
            session.end(aclose)

    def enter(self, async_cm: AbstractAsyncContextManager[T]) -> AbstractContextManager[T]:
        """Use an async context manager from sync code: ``__aenter__`` and
        ``__aexit__`` run in one dedicated task of the pet (so a context
        manager that opens a nursery or a timeout works)."""
        refuse_blocking_here(f"{self.name}.enter", describe(async_cm))
        return _Entered(_Session(self, f"entering {describe(async_cm)}"), async_cm)


_END = object()


class _Session:
    """One dedicated task of a pet that runs the steps sync code sends it, in
    order, until told to end. Every step gets exactly one outcome: its own,
    or the task's end (the pet closing) for steps left over."""

    def __init__(self, pet: PetExecutor, label: str) -> None:
        self._pet = pet
        self._label = label
        self._lock = threading.Lock()
        self._steps: deque[tuple[Any, WorkFuture[Any]]] = deque()
        self._doorbell: WorkFuture[None] | None = None
        self._over: BaseException | None = None
        #: Run in the task if it is cancelled (the pet closing) while it waits
        #: for a step: what the sync side would have run to finish.
        self.on_abandon: Callable[[BaseException], Awaitable[object]] | None = None
        self._task = pet.submit_work(self._serve, contextvars.copy_context(), label)
        self._task.add_done_callback(self._task_ended)

    def _send(self, step: Any) -> WorkFuture[Any]:
        reply: WorkFuture[Any] = WorkFuture(self._label)
        reply.thread_ident = self._task.thread_ident
        with self._lock:
            if self._over is not None:
                raise self._over
            self._steps.append((step, reply))
            doorbell, self._doorbell = self._doorbell, None
        if doorbell is not None:
            doorbell.deliver_value(None)
        return reply

    def request(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step()`` in the session's task and wait for its outcome."""
        result: T = wait_done(current_context(), self._send(step))
        return result

    def end(self, last: Callable[[], Awaitable[object]] | None) -> None:
        """Run ``last()`` (if any) and end the task. Waits (bounded) unless
        called on the pet's own thread (an abandoned iterator collected there)."""
        try:
            reply = self._send((_END, last))
        except BaseException:
            return  # the task is over already
        if threading.get_ident() != self._task.thread_ident:
            concurrent.futures.wait([reply], CLOSE_TIMEOUT_S)

    async def _serve(self) -> None:
        adapter = self._pet._adapter
        while True:
            with self._lock:
                item = self._steps.popleft() if self._steps else None
                if item is None:
                    doorbell = self._doorbell = WorkFuture("doorbell")
                    doorbell.set_running_or_notify_cancel()
            if item is None:
                try:
                    await adapter.await_future(doorbell, abandon_on_cancel=True)
                except BaseException as exc:
                    cleanup, self.on_abandon = self.on_abandon, None
                    if cleanup is not None:
                        with contextlib.suppress(Exception):
                            await cleanup(exc)
                    raise
                continue
            step, reply = item
            try:
                if isinstance(step, tuple):  # (_END, last step or None)
                    if step[1] is not None:
                        await step[1]()
                    reply.deliver_value(None)
                    return
                reply.deliver_value(await step())
            except Exception as exc:
                reply.deliver_error(exc)
            except BaseException as exc:  # the task's own cancellation: it ends
                reply.deliver_error(exc)
                raise

    def _task_ended(self, task: concurrent.futures.Future[None]) -> None:
        error: BaseException = self._pet._closed_error(f"{self._label} ended")
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()  # type: ignore[assignment]
        with self._lock:
            self._over = error
            left = list(self._steps)
            self._steps.clear()
        for _, reply in left:
            reply.deliver_error(error)


class _Entered(AbstractContextManager[T]):
    def __init__(self, session: _Session, async_cm: AbstractAsyncContextManager[T]) -> None:
        self._session = session
        self._cm = async_cm

    def __enter__(self) -> T:
        try:
            value = self._session.request(self._cm.__aenter__)
        except BaseException:
            self._session.end(None)
            raise
        cm = self._cm
        self._session.on_abandon = lambda exc: cm.__aexit__(type(exc), exc, exc.__traceback__)
        return value

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._session.on_abandon = None
        try:
            suppress = self._session.request(lambda: self._cm.__aexit__(exc_type, exc, tb))
        finally:
            self._session.end(None)
        return bool(suppress)


def _close_all_at_exit() -> None:
    # Runs before the interpreter joins non-daemon threads, so a thread
    # blocked in pet.call() is released (with PetClosedError) and exit goes on.
    for pet in list(_live):
        pet.close(timeout=CLOSE_TIMEOUT_S)


def _after_fork_in_child() -> None:
    # The child has none of the parent's threads. Forget each inherited run
    # without closing it (closing would unregister the parent's descriptors
    # from an epoll the two processes share) and fail what was pending.
    for pet in list(_live):
        pet._forget_after_fork()


#: Runs inherited through fork: kept referenced forever, so never closed.
_FORK_ORPHANS: list[object] = []

threading._register_atexit(_close_all_at_exit)  # type: ignore[attr-defined]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

PetExecutor.__module__ = "pet_executor"  # its public path
