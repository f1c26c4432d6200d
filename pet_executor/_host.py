"""The pet executor: one run of any runtime, hosted on a daemon thread of its own.

Theory of operation. A ``PetExecutor`` starts its thread lazily, on the first
call. The thread runs ``adapter.run(self._serve)``: the run's main task
publishes the run's token, then waits for the stop signal (a
``concurrent.futures.Future``). Every call is a :class:`WorkFuture` put in
``_pending`` and handed to the run through the token; on the pet's thread,
``_start_work`` starts it as a task of its own (``adapter.spawn_work``).

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

from bridge._block_on import refuse_blocking_here, wait_done
from bridge._context import Token, current_context, mark_pet_thread, owned_run
from bridge._errors import Fix, PetClosedError, RunFinishedError
from bridge._registry import get
from bridge._work import WorkFuture, as_async_callable, bind_work, describe

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
        self.token: Token | None = None
        self.error: BaseException | None = None


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
        self._stop: WorkFuture[float] | None = None
        self._pending: set[WorkFuture[Any]] = set()
        self._death: BaseException | None = None
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

    def _ensure_started(self) -> Token:
        with self._lock:
            if self._closed:
                raise self._closed_error("the pet is closed")
            if self._running():
                assert self._token is not None
                return self._token
            started = _Started()
            thread = threading.Thread(
                target=self._thread_main, args=(started,), name=self.name, daemon=True
            )
            self._thread, self._token, self._death = thread, None, None
            thread.start()
            if not started.event.wait(_START_TIMEOUT_S) or started.token is None:
                error = started.error or RuntimeError(f"{self.name} did not start in time")
                raise PetClosedError(
                    f"{self.name} could not start its {self.runtime} run: {error!r}."
                ) from error
            self._token = started.token
            return started.token

    def _thread_main(self, started: _Started) -> None:
        mark_pet_thread()
        try:
            with owned_run(self.runtime):
                self._adapter.run(self._serve, started, portals=True, **self._options)
        except BaseException as exc:
            started.error = exc
            self._death = exc
        finally:
            started.event.set()
            with self._lock:
                left = list(self._pending)
                self._token = None
            reason = "closed" if self._closed else f"its thread ended ({self._death!r})"
            for future in left:
                future.deliver_error(
                    self._closed_error(f"the pet {reason} before the call finished")
                )

    async def _serve(self, started: _Started) -> None:
        token = current_context().token
        assert token is not None
        stop: WorkFuture[float] = WorkFuture("stop")
        self._stop = stop
        started.token = token
        started.event.set()
        try:
            await self._adapter.await_future(stop)
        finally:
            # Closing: cancel what runs and wait (bounded) for its cleanup;
            # calls queued but not started end with PetClosedError.
            with self._lock:
                pending = list(self._pending)
            error = self._closed_error("the pet was closed while the call was pending")
            for future in pending:
                future.cancel_for_close(error)
            bound = stop.result() if stop.done() and not stop.cancelled() else CLOSE_TIMEOUT_S
            deadline = time.monotonic() + bound
            for future in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await self._adapter.await_future(_bounded(future, remaining))

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
        left = list(self._pending)
        self._pending.clear()
        if self._token is not None:
            _FORK_ORPHANS.append(self._token.native)
        self._thread = self._token = self._stop = None
        for future in left:
            future.deliver_error(
                self._closed_error("the process forked; the pet's run stayed in the parent")
            )

    # -- calls ----------------------------------------------------------------

    def submit(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> WorkFuture[T]:
        """Start ``async_fn(*args)`` as a task of the pet's run; return a
        ``concurrent.futures.Future`` whose ``cancel()`` cancels the task (the
        future ends cancelled once the task's cleanup ran)."""
        work = as_async_callable(async_fn, args, api=f"{type(self).__name__}.submit")
        return self.submit_work(work, contextvars.copy_context(), describe(async_fn))

    def submit_work(
        self, work: Callable[[], Awaitable[T]], context: contextvars.Context, label: str
    ) -> WorkFuture[T]:
        """``submit`` for work already normalised, running in ``context``."""
        token = self._ensure_started()
        future: WorkFuture[T] = WorkFuture(f"{label} on {self.name}")
        future.thread_ident = token.thread_ident
        bind_work(context, future)
        with self._lock:
            if self._closed:
                raise self._closed_error("the pet is closed")
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        try:
            token.run_sync_soon_threadsafe(self._start_work, token, work, context, future)
        except RunFinishedError:
            future.deliver_error(self._closed_error("the pet's run ended"))
        return future

    def _start_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        # On the pet's thread.
        if self._closed or not future.set_running_or_notify_cancel():
            future.deliver_error(self._closed_error("the pet was closed before the call started"))
            return
        try:
            self._adapter.spawn_work(token, work, context, future)
        except BaseException as exc:  # e.g. work() was not async after all
            future.deliver_error(exc)

    def call(
        self, async_fn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None
    ) -> T:
        """Run ``async_fn(*args)`` on the pet and block until it is done.

        Follows the ``block_on`` table: from a loop thread without a portal it
        raises :class:`~bridge.BlockingInLoopError`. ``timeout`` cancels the
        work, waits (bounded) for its cleanup, then raises ``TimeoutError``.
        """
        from bridge._block_on import wait_blocking

        return wait_blocking(
            lambda: self.submit(async_fn, *args),
            timeout=timeout,
            what=describe(async_fn),
            api=f"{self.name}.call",
        )

    def iterate(self, async_iterable: AsyncIterable[T]) -> Iterator[T]:
        """Iterate ``async_iterable`` from sync code; every step runs in one
        dedicated task of the pet (an async generator that opens a nursery or
        a timeout keeps working). Closing or abandoning the iterator closes
        the async iterator on the pet, by its runtime's rules."""
        refuse_blocking_here(f"{self.name}.iterate", describe(async_iterable))
        session = _Session(self, f"iterating {describe(async_iterable)}")
        iterator = aiter(async_iterable)
        try:
            while True:
                try:
                    item = session.request(iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(iterator, "aclose", None)
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
                await adapter.await_future(doorbell)
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
            return self._session.request(self._cm.__aenter__)
        except BaseException:
            self._session.end(None)
            raise

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        try:
            suppress = self._session.request(lambda: self._cm.__aexit__(exc_type, exc, tb))
        finally:
            self._session.end(None)
        return bool(suppress)


def _bounded(future: WorkFuture[Any], timeout: float) -> WorkFuture[None]:
    """A future that completes when ``future`` does, or after ``timeout``."""
    done: WorkFuture[None] = WorkFuture("bounded wait")
    done.set_running_or_notify_cancel()
    timer = threading.Timer(timeout, done.deliver_value, args=(None,))
    timer.daemon = True

    def finished(_: object) -> None:
        timer.cancel()
        done.deliver_value(None)

    future.add_done_callback(finished)
    timer.start()
    return done


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
