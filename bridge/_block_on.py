"""Sync calls async: ``block_on`` and the blocking wait every blocking entry
point shares (``PetExecutor.call``, ...).

Where the work runs depends on where the caller is (docs/where.md):

- a plain thread: on this thread, on a runner cached per thread and per
  runtime (trio cannot resume a run: its work goes to the shared trio pet);
- a worker whose owner is known: back on the owner's loop; a worker whose
  owner is unknown, or work for another runtime: on that runtime's shared pet;
- an event-loop thread: refused with ``BlockingInLoopError`` (a portal or the
  ``offload`` policy lifts that; see bridge.configure).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: no enum wrapping
import concurrent.futures
import contextlib
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from sys import modules as _modules
from typing import Any, TypeVar, overload

from ._config import settings
from ._context import Context, Token, current_context
from ._errors import BlockingInLoopError, Fix, GuestCancelledError
from ._foreign import as_delivered
from ._registry import Runner, RuntimeAdapter, get
from ._runners import discard_thread_runner, thread_runner
from ._work import InContext, WorkFuture, as_async_callable, await_work, bind_work, describe
from ._work import copy_back as copy_context_back

T = TypeVar("T")

__all__ = ("block_on", "submit_to", "wait_blocking", "wait_submitted")

#: How long a timed-out or interrupted call waits for the work's cleanup.
CLEANUP_TIMEOUT_S = 5.0


@overload
def block_on(
    awaitable: Awaitable[T],
    /,
    *,
    runtime: str | None = ...,
    timeout: float | None = ...,
    copy_back: bool = ...,
) -> T: ...
@overload
def block_on(
    async_fn: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    runtime: str | None = ...,
    timeout: float | None = ...,
    copy_back: bool = ...,
) -> T: ...
def block_on(
    awaitable_or_async_fn: Awaitable[T] | Callable[..., Awaitable[T]],
    /,
    *args: Any,
    runtime: str | None = None,
    timeout: float | None = None,
    copy_back: bool = False,
) -> T:
    """Run async work from sync code and return its result.

    Accepts an awaitable, or an async function and its arguments. Where the
    work runs depends on where this is called (see the module docstring and
    docs/where.md). ``timeout`` cancels the work, waits (bounded) for its
    cleanup, then raises ``TimeoutError``. The caller's contextvars are copied
    into the work; the work's changes come back only with ``copy_back=True``.
    """
    work = as_async_callable(awaitable_or_async_fn, args)
    context = contextvars.copy_context()
    try:
        # The hot path of re-entry first: code in a portal's worker, for its
        # task's own runtime (the portal module is loaded once a portal exists).
        portal = _modules.get("bridge._portal") if runtime is None and timeout is None else None
        if portal is not None and portal.in_worker():
            result: T = portal.portal_run(work(), context)
            return result
        return _run_from_here(awaitable_or_async_fn, work, context, runtime, timeout)
    finally:
        if copy_back:
            copy_context_back(context)


def _run_from_here(
    awaitable_or_async_fn: object,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    runtime: str | None,
    timeout: float | None,
) -> T:
    """``block_on``, by the table, for the caller's ``current_context()``."""
    what = describe(awaitable_or_async_fn)
    here = current_context()
    if here.role == "event_loop" and not here.portal and settings.policy != "offload":
        _close_unused(awaitable_or_async_fn)
        raise _blocking_in_loop(here, "bridge.block_on", what)
    target = runtime or (here.runtime if here.role != "plain" else None)
    target = target or settings.default_runtime
    adapter = get(target)
    if here.portal:
        return _through_portal(here, target, adapter, work, context, timeout)
    if here.role == "event_loop":
        # The offload policy: this loop blocks while the target's pet runs
        # the work, under deadlock detection.
        return _on_shared_pet(target, work, context, what, timeout)
    if here.role == "worker":
        if here.token is not None and here.token.runtime == target:
            # Back to the loop that owns this worker: objects bound to it work.
            future = submit_to(here.token, adapter, work, context, what)
            return wait_submitted(here, future, timeout, what)
        return _on_shared_pet(target, work, context, what, timeout)
    runner = thread_runner(target)
    if runner is None:  # trio: a run cannot be resumed on this thread
        return _on_shared_pet(target, work, context, what, timeout)
    return _drive(target, runner, work, context, what, timeout)


def _through_portal(
    here: Context,
    target: str,
    adapter: RuntimeAdapter,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    timeout: float | None,
) -> T:
    """On a loop thread, in a task with a portal: suspend the sync frames and
    await the work on this very loop (same runtime: no thread, no nested
    loop), or through adapters.call for another runtime."""
    from adapters._call import call

    from ._portal import portal_await

    if target == here.runtime:
        awaitable: Awaitable[T] = InContext(work(), context)  # type: ignore[arg-type]
    else:
        awaitable = context.run(call, target, work)
    if timeout is not None:
        awaitable = adapter_of(here).timeout(timeout, awaitable)
    return portal_await(awaitable)


def adapter_of(here: Context) -> RuntimeAdapter:
    assert here.runtime is not None
    return get(here.runtime)


def _close_unused(obj: object) -> None:
    # A coroutine we refuse to run would warn "never awaited": close it.
    close = getattr(obj, "close", None)
    if callable(close) and hasattr(obj, "cr_frame"):
        close()


def _on_shared_pet(
    runtime: str,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    what: str,
    timeout: float | None,
) -> T:
    from ._pets import pet

    shared = pet(runtime)
    return wait_blocking(
        lambda: shared.submit_work(work, context, what), timeout=timeout, what=what
    )


def submit_to(
    token: Token,
    adapter: RuntimeAdapter,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    label: str,
) -> WorkFuture[T]:
    """Start ``work`` as a task of ``token``'s run, from any thread."""
    future: WorkFuture[T] = WorkFuture(label)
    future.thread_ident = token.thread_ident
    bind_work(context, future)
    token.run_sync_soon_threadsafe(_start, token, adapter, work, context, future)
    return future


def _start(
    token: Token,
    adapter: RuntimeAdapter,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    future: WorkFuture[T],
) -> None:
    # On the run's thread.
    if future.claim():
        try:
            adapter.spawn_work(token, work, context, future)
        except Exception as exc:
            future.deliver_error(exc)
        except BaseException as exc:  # the work's own, from a first step taken at once
            future.deliver_error(exc)
            raise


def _blocking_in_loop(here: Context, api: str, what: str) -> BlockingInLoopError:
    where = f"{here.runtime}'s event loop" + (
        " (in a task)" if here.in_task else " (in a loop callback)"
    )
    return BlockingInLoopError(
        f"{api}({what}) was called on a thread that is running {where}, "
        f"in code without a greenlet portal.",
        fixes=(
            Fix(f"{api}({what}(...))", f"await {what}(...)", "when the caller can be async"),
            Fix(
                "sync_caller()  # which calls block_on",
                "await bridge.spawn_blocking(sync_caller)",
                "run the sync caller on a worker thread",
            ),
            Fix(
                f"{api}({what}(...))  # deep in sync code called from a task",
                "await bridge.ensure_portal()  # once, early in the task",
                "give the task a portal, so sync code may re-enter the loop",
            ),
        ),
    )


def refuse_blocking_here(api: str, what: str) -> Context:
    """Raise ``BlockingInLoopError`` if this thread runs an event loop, in
    code without a portal (and the process did not choose the offload
    policy). Returns where we are."""
    here = current_context()
    if here.role == "event_loop" and not here.portal and settings.policy != "offload":
        raise _blocking_in_loop(here, api, what)
    return here


def wait_done(here: Context, future: WorkFuture[T], timeout: float | None = None) -> T:
    """Wait for ``future``: through the portal when this code has one (the
    loop keeps running, and may well be the one running the work), else by
    blocking this thread (a wait the deadlock detector sees)."""
    if not here.portal:
        return future.result(timeout)
    from ._portal import portal_await

    adapter = adapter_of(here)
    awaitable = await_work(adapter, future)
    if timeout is not None:
        awaitable = adapter.timeout(timeout, awaitable)
    try:
        return portal_await(awaitable)
    except TimeoutError:
        raise concurrent.futures.TimeoutError from None


def wait_blocking(
    submit: Callable[[], WorkFuture[T]],
    *,
    timeout: float | None,
    what: str,
    api: str = "a blocking call",
    here: Context | None = None,
) -> T:
    """Submit work to a run on another thread and block this thread until it
    is done. On timeout or Ctrl-C the work is cancelled and its cleanup gets
    a bounded wait before ``TimeoutError`` / ``KeyboardInterrupt``. On a loop
    thread it raises ``BlockingInLoopError``, unless the process chose the
    offload policy (then the wait is under deadlock detection). ``here``: the
    caller's ``current_context()``, when it has made that check already."""
    if here is None:
        here = refuse_blocking_here(api, what)
    return wait_submitted(here, submit(), timeout, what)


def wait_submitted(here: Context, future: WorkFuture[T], timeout: float | None, what: str) -> T:
    """The wait of :func:`wait_blocking`, for work submitted already by a
    caller that checked ``refuse_blocking_here``."""
    try:
        if not here.portal:
            return future.result(timeout)  # wait_done's own first case, inline
        return wait_done(here, future, timeout)
    except concurrent.futures.TimeoutError:
        if future.done():  # it finished just as the wait gave up
            return future.result()
        raise _timed_out(future, what, timeout) from None
    except KeyboardInterrupt:
        future.cancel()
        _wait_quietly(future, CLEANUP_TIMEOUT_S)
        raise


def _wait_quietly(future: concurrent.futures.Future[Any], timeout: float) -> None:
    with contextlib.suppress(BaseException):
        concurrent.futures.wait([future], timeout)


def _timed_out(future: WorkFuture[Any], what: str, timeout: float | None) -> TimeoutError:
    future.cancel()
    _wait_quietly(future, CLEANUP_TIMEOUT_S)
    cleanup = "its cleanup ran" if future.done() else "its cleanup is still running"
    return TimeoutError(
        f"{what} did not finish within {timeout} s; it was cancelled and {cleanup}."
    )


def _drive(
    runtime: str,
    runner: Runner,
    work: Callable[[], Awaitable[T]],
    context: contextvars.Context,
    what: str,
    timeout: float | None,
) -> T:
    """Run ``work`` on this thread's cached runner of ``runtime``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    # SIGINT handling is in place before the first step: a Ctrl-C that lands
    # while the runner sets up or takes down a step must not go through its
    # bookkeeping (a loop left marked running would refuse every later call).
    interrupted = _Interrupted(runner)
    try:
        # Work that finishes in its first step never suspends: no loop turn.
        now = runner.step_now(work, context)
        if now is not None:
            kind, value = now
        else:
            if interrupted.count:  # during the first step: its task was not known yet
                runner.cancel_current()
            kind, value = runner.run(work, context, deadline, CLEANUP_TIMEOUT_S)
    except KeyboardInterrupt:  # a second Ctrl-C, straight through the loop
        interrupted.count += 1
        kind, value = "pending", None
    finally:
        interrupted.restore()
    if interrupted.count:
        # A runner that a KeyboardInterrupt went through may be mid-step.
        discard_thread_runner(runtime)
        raise KeyboardInterrupt
    if kind == "value":
        result: T = value
        return result
    if kind == "error":
        raise as_delivered(value, runtime, what)
    if kind == "cancelled" and deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(
            f"{what} did not finish within {timeout} s; it was cancelled and its cleanup ran."
        )
    if kind == "cancelled":
        raise GuestCancelledError(
            f"{what} was cancelled inside its {runtime} run, not by its caller."
        )
    raise TimeoutError(
        f"{what} did not finish within {timeout} s; it was cancelled and its cleanup "
        f"is still running (it stays pending until the next call on this thread)."
    )


class _Interrupted:
    """While this thread drives a loop: Ctrl-C cancels the work (a second one
    interrupts at once). Only on the main thread, and only when SIGINT has
    its default handler (the rule asyncio.Runner and trio follow). Uses the
    ``_signal`` functions: ``signal.signal`` costs microseconds per call."""

    __slots__ = ("count", "installed", "runner")

    def __init__(self, runner: Runner) -> None:
        self.count = 0
        self.runner = runner
        self.installed = (
            threading.get_ident() == _MAIN_THREAD_ID
            and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
        )
        if self.installed:
            _signal.signal(_signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.runner.cancel_current()

    def restore(self) -> None:
        if self.installed:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)


_MAIN_THREAD_ID = threading.main_thread().ident
