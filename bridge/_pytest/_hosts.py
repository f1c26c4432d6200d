"""The runs that host tests and their async fixtures, one per variant per
worker, and the per-step timeout.

Theory of operation. Every test of a variant, and every async fixture it
uses, runs as a task of one long run of that variant, so fixtures of any
scope share the test's run. asyncio (and uvloop), curio and pet_executor can
resume a run: their host is a runner (``RuntimeAdapter.new_runner``) driven
on the main thread, one step (a fixture's setup, the test, a teardown) at a
time, with tasks left pending between steps. trio cannot resume a run: its
host is one ``trio.run`` on a thread of its own, for the whole session, and
each step is a task of it that the main thread waits for.

An async generator fixture runs in a task of its own that lives from its
setup to its teardown (so a nursery, a timeout or a task group it opens is
entered and exited in one task): the setup step starts the task and waits
until the generator yields; the teardown step releases it and waits for its
end. Releasing is done from inside a step, so the wake-up reaches a run that
is running (a paused runner refuses callbacks).

Timeouts. A watchdog thread watches the deadline of the step in progress.
At the deadline it takes a dump (threads and tasks), then asks the run to
cancel the step; the step's cleanup gets ``GRACE_S`` more seconds. A step
still running after that is stuck in blocking code: a second dump is taken,
then a trio step's host is abandoned (its thread cannot be stopped), and a
main-thread step is interrupted with a signal whose handler raises
``StepHung`` in the main thread (the runner is then discarded).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import inspect
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from .._errors import RunFinishedError
from .._registry import Runner, RuntimeAdapter, get
from ._dump import Dump, TaskInfo, coroutine_stack, take_dump
from ._variants import Variant

__all__ = (
    "GRACE_S",
    "FixtureRun",
    "Host",
    "StepTimedOut",
    "host_for",
    "close_hosts",
    "own_threads",
)

#: How long a cancelled step may take to clean up before it counts as stuck.
GRACE_S = 2.0


class StepTimedOut(Exception):
    """A step overran its timeout; carries the dumps taken."""

    def __init__(self, what: str, timeout: float, dumps: list[Dump], stuck: bool) -> None:
        self.what, self.timeout, self.dumps, self.stuck = what, timeout, dumps, stuck
        if stuck:
            how = (
                f"it was cancelled at the deadline but was still running {GRACE_S} s later "
                "(blocking code, or cleanup that ignores cancellation)"
            )
        else:
            how = "it was cancelled at the deadline, and its cleanup ran"
        super().__init__(f"{what} timed out after {timeout} s: {how}.")

    def report(self) -> str:
        return "\n\n".join([str(self), *(d.render() for d in self.dumps)])


class StepHung(BaseException):
    """Raised in the main thread, by a signal, in a step that did not stop
    when cancelled (a BaseException: nothing in the test should catch it)."""


# -- the watchdog -------------------------------------------------------------


class _Watchdog:
    """One daemon thread calling ``action()`` when an armed deadline passes.
    ``disarm()`` returns only when no action is running."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._action: Callable[[], None] | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def arm(self, delay: float, action: Callable[[], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._main, name="bridge-pytest-watchdog", daemon=True
                )
                self._thread.start()
            self._deadline, self._action = time.monotonic() + delay, action
            self._cond.notify_all()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = self._action = None
            while self._busy:
                self._cond.wait()

    def _main(self) -> None:
        with self._cond:
            while True:
                deadline = self._deadline
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                action, self._deadline, self._action = self._action, None, None
                if action is None:
                    continue
                self._busy = True
                self._cond.release()
                try:
                    action()
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread


_watchdog = _Watchdog()

# The signal that interrupts a stuck main-thread step (installed once, and
# only where nobody handles it already).
_HANG_SIGNAL: int | None = getattr(signal, "SIGUSR2", None)
_hang_requested = False
_hang_handler_installed = False


def _on_hang_signal(signum: int, frame: object) -> None:
    global _hang_requested
    if _hang_requested:
        _hang_requested = False
        raise StepHung("the step did not stop when cancelled")


def _can_interrupt_main() -> bool:
    global _hang_handler_installed
    if _hang_handler_installed:
        return True
    if (
        _HANG_SIGNAL is None
        or not hasattr(signal, "pthread_kill")
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(_HANG_SIGNAL) is not signal.SIG_DFL
    ):
        return False
    signal.signal(_HANG_SIGNAL, _on_hang_signal)
    _hang_handler_installed = True
    return True


def _interrupt_main() -> None:
    global _hang_requested
    assert _HANG_SIGNAL is not None
    _hang_requested = True
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, _HANG_SIGNAL)


# -- hosts ----------------------------------------------------------------------


class Host(ABC):
    """One long run of a variant that runs steps (tests, fixture setups and
    teardowns) as tasks of it."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.adapter: RuntimeAdapter = get(variant.runtime)
        self.broken = False

    def run(
        self,
        work: Callable[[], Awaitable[Any]],
        context: contextvars.Context,
        *,
        timeout: float | None,
        what: str,
    ) -> Any:
        """Run ``work()`` as a task of this run, in ``context``; return its
        value or raise its error. Past ``timeout`` seconds: see the module."""
        if self.broken:
            raise RuntimeError(f"the {self.variant.name} run of the test session broke earlier")
        return self._run(work, context, timeout, what)

    @abstractmethod
    def _run(
        self,
        work: Callable[[], Awaitable[Any]],
        context: contextvars.Context,
        timeout: float | None,
        what: str,
    ) -> Any: ...

    @abstractmethod
    def tasks(self) -> list[tuple[object, TaskInfo]]:
        """The tasks of this run that are not finished, between two steps."""

    @abstractmethod
    def close(self) -> None: ...

    def threads(self) -> list[threading.Thread]:
        """Threads that belong to this host (exempt from the leak check)."""
        return []


def _timed_out_outcome(what: str, timeout: float, dumps: list[Dump], stuck: bool) -> StepTimedOut:
    return StepTimedOut(what, timeout, dumps, stuck)


class RunnerHost(Host):
    """A resumable run driven on the main thread (asyncio, uvloop, curio,
    pet_executor)."""

    def __init__(self, variant: Variant, runner: Runner) -> None:
        super().__init__(variant)
        self.runner = runner

    def _run(
        self,
        work: Callable[[], Awaitable[Any]],
        context: contextvars.Context,
        timeout: float | None,
        what: str,
    ) -> Any:
        runner = self.runner
        dumps: list[Dump] = []
        cancelled_by_us = False
        stuck = False

        def at_deadline() -> None:
            nonlocal cancelled_by_us
            dumps.append(take_dump(f"at the deadline of {what}"))
            cancelled_by_us = True
            with contextlib.suppress(RunFinishedError):
                runner.token.run_sync_soon_threadsafe(runner.cancel_current)
            _watchdog.arm(GRACE_S, after_grace)

        def after_grace() -> None:
            nonlocal stuck
            stuck = True
            dumps.append(take_dump(f"{GRACE_S} s after cancelling {what}"))
            if interruptible:
                _interrupt_main()

        interruptible = _can_interrupt_main()
        if timeout is not None:
            _watchdog.arm(timeout, at_deadline)
        try:
            try:
                outcome = runner.run(work, context, None, GRACE_S)
            finally:
                _watchdog.disarm()
        except StepHung:
            self._discard()
            raise _timed_out_outcome(what, timeout or 0.0, dumps, True) from None
        kind, value = outcome
        if cancelled_by_us:
            assert timeout is not None
            error = _timed_out_outcome(what, timeout, dumps, stuck or kind == "pending")
            if kind == "error" and not isinstance(value, StepHung):
                raise error from value
            if kind == "pending" or stuck:
                self._discard()
            raise error
        if kind == "value":
            return value
        if kind == "error":
            if isinstance(value, StepHung):
                self._discard()
                raise _timed_out_outcome(what, timeout or 0.0, dumps, True) from None
            raise value
        raise RuntimeError(f"{what} was cancelled by its {self.variant.name} run")

    def _discard(self) -> None:
        self.broken = True
        with contextlib.suppress(BaseException):
            self.runner.close()

    def tasks(self) -> list[tuple[object, TaskInfo]]:
        return _runner_tasks(self.variant.runtime, self.runner)

    def threads(self) -> list[threading.Thread]:
        # The loop's default executor is the run's own, warm like the run.
        loop = getattr(self.runner, "loop", None)
        executor = getattr(loop, "_default_executor", None)
        return list(getattr(executor, "_threads", ()))

    def close(self) -> None:
        if not self.broken:
            self.runner.close()


def _describe_task(task: object, name: str, coro: Any) -> tuple[object, TaskInfo]:
    return task, TaskInfo(name, coroutine_stack(coro))


def _is_ours(coro: Any) -> bool:
    """Whether a task's coroutine is the library's own plumbing."""
    code = getattr(coro, "cr_code", None)
    module = getattr(code, "co_filename", "")
    return any(part in module for part in ("/adapters/", "/bridge/", "/pet_executor/_host"))


def _runner_tasks(runtime: str, runner: Runner) -> list[tuple[object, TaskInfo]]:
    found: list[tuple[object, TaskInfo]] = []
    if runtime == "asyncio":
        import asyncio

        loop: asyncio.AbstractEventLoop = runner.loop  # type: ignore[attr-defined]
        for task in asyncio.all_tasks(loop):
            if not task.done():
                found.append(
                    _describe_task(task, f"asyncio task {task.get_name()!r}", task.get_coro())
                )
    elif runtime == "curio":
        kernel = runner._kernel  # type: ignore[attr-defined]
        for task in list(kernel._tasks.values()):
            if not task.terminated and not _is_ours(task.coro):
                found.append(_describe_task(task, f"curio task {task.name!r}", task.coro))
    elif runtime == "pet_executor":
        kernel = runner._kernel  # type: ignore[attr-defined]
        for task in list(kernel._tasks):
            coro = task._coro
            if coro is not None and not _is_ours(coro):
                found.append(_describe_task(task, f"pet_executor task {task.name!r}", coro))
    return found


class ThreadHost(Host):
    """A run that cannot be resumed (trio), hosted on a thread of its own for
    the whole session; each step is a task of it."""

    def __init__(self, variant: Variant) -> None:
        super().__init__(variant)
        self._stop: concurrent.futures.Future[None] = concurrent.futures.Future()
        started: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._root: Any = None
        self._thread = threading.Thread(
            target=self._main, args=(started,), name=f"bridge-pytest-{variant.name}", daemon=True
        )
        self._thread.start()
        self.token = started.result(timeout=30)

    def _main(self, started: concurrent.futures.Future[Any]) -> None:
        try:
            self.adapter.run(self._serve, started, **self.variant.options())
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)

    async def _serve(self, started: concurrent.futures.Future[Any]) -> None:
        from .._context import current_context

        if self.variant.runtime == "trio":
            import trio

            self._root = trio.lowlevel.current_root_task()
        started.set_result(current_context().token)
        await self.adapter.await_future(self._stop)

    def _run(
        self,
        work: Callable[[], Awaitable[Any]],
        context: contextvars.Context,
        timeout: float | None,
        what: str,
    ) -> Any:
        from .._work import WorkFuture

        future: WorkFuture[Any] = WorkFuture(what)
        self.token.run_sync_soon_threadsafe(_start, self.adapter, self.token, work, context, future)
        done, _ = concurrent.futures.wait([future], timeout)
        if not done:
            assert timeout is not None
            dumps = [take_dump(f"at the deadline of {what}")]
            future.cancel()
            done, _ = concurrent.futures.wait([future], GRACE_S)
            stuck = not done
            if stuck:
                dumps.append(take_dump(f"{GRACE_S} s after cancelling {what}"))
                self.broken = True  # its thread is stuck: the next test gets a new run
            error = StepTimedOut(what, timeout, dumps, stuck)
            if done and not future.cancelled() and future.exception() is not None:
                raise error from future.exception()
            raise error
        if future.cancelled():
            raise RuntimeError(f"{what} was cancelled by its {self.variant.name} run")
        return future.result()

    def tasks(self) -> list[tuple[object, TaskInfo]]:
        found: list[tuple[object, TaskInfo]] = []
        if self._root is None:
            return found
        stack = [self._root]
        while stack:
            task = stack.pop()
            for nursery in list(task.child_nurseries):
                stack.extend(list(nursery.child_tasks))
            coro = task.coro
            if task is self._root or _is_ours(coro) or task.name.startswith("<"):
                continue
            if getattr(coro, "cr_code", None) is not None and "/trio/" in coro.cr_code.co_filename:
                continue
            found.append(_describe_task(task, f"trio task {task.name!r}", coro))
        return found

    def threads(self) -> list[threading.Thread]:
        return [self._thread]

    def close(self) -> None:
        if self.broken:
            return
        if not self._stop.done():
            self._stop.set_result(None)
        self._thread.join(10)


# -- async fixtures -------------------------------------------------------------


class FixtureRun:
    """One async fixture's value, and its task for an async generator."""

    def __init__(self, host: Host, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.host, self.func, self.kwargs = host, func, kwargs
        self.context_after: contextvars.Context | None = None
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._release: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._task: concurrent.futures.Future[None] | None = None

    def setup(self, context: contextvars.Context, timeout: float | None, what: str) -> Any:
        host = self.host
        if not inspect.isasyncgenfunction(self.func):

            async def call() -> Any:
                value = await self.func(**self.kwargs)
                self.context_after = contextvars.copy_context()
                return value

            return host.run(call, context, timeout=timeout, what=what)

        async def start() -> Any:
            from .._work import WorkFuture

            task: WorkFuture[None] = WorkFuture(what)
            self._task = task
            token = _current_token()
            _start(host.adapter, token, self._generator_task, contextvars.copy_context(), task)
            try:
                return await host.adapter.await_future(self._ready)
            except BaseException:
                task.cancel()
                raise

        try:
            return host.run(start, context, timeout=timeout, what=what)
        except StepTimedOut:
            if self._task is not None:
                self._task.cancel()
            raise

    async def _generator_task(self) -> None:
        agen: AsyncGenerator[Any, None] = self.func(**self.kwargs)
        try:
            value = await agen.__anext__()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            return
        self.context_after = contextvars.copy_context()
        self._ready.set_result(value)
        await self.host.adapter.await_future(self._release)
        try:
            await agen.__anext__()
        except StopAsyncIteration:
            return
        await agen.aclose()
        raise RuntimeError(f"the async fixture {self.func.__qualname__} yielded twice")

    def teardown(self, context: contextvars.Context, timeout: float | None, what: str) -> None:
        task = self._task
        if task is None or self.host.broken:
            return
        host = self.host

        async def finish() -> None:
            self._release.set_result(None)
            await host.adapter.await_future(task)

        host.run(finish, context, timeout=timeout, what=what)


def _start(
    adapter: RuntimeAdapter,
    token: Any,
    work: Callable[[], Awaitable[Any]],
    context: contextvars.Context,
    future: Any,
) -> None:
    """On the run's thread: start ``work`` as a task that reports to ``future``."""
    if not future.claim():
        return  # cancelled before it started
    try:
        adapter.spawn_work(token, work, context, future)
    except BaseException as exc:
        future.deliver_error(exc)


def _current_token() -> Any:
    from .._context import current_context

    token = current_context().token
    assert token is not None
    return token


# -- the hosts of this process ------------------------------------------------------

_hosts: dict[str, Host] = {}
#: Threads of hosts that broke (stuck in a test that did not stop).
_abandoned: list[threading.Thread] = []


def host_for(variant: Variant) -> Host:
    """This worker's host of ``variant``, made on first use (again after it broke)."""
    host = _hosts.get(variant.name)
    if host is None or host.broken:
        if host is not None:
            _abandoned.extend(host.threads())
        runner = get(variant.runtime).new_runner(**variant.options())
        host = RunnerHost(variant, runner) if runner is not None else ThreadHost(variant)
        # A first step makes what a run makes once (curio's kernel task and
        # its sockets), so that the leak check never sees it.
        host.run(_nothing, contextvars.copy_context(), timeout=None, what="warm-up")
        if isinstance(host, RunnerHost):
            _ = host.runner.token
        _hosts[variant.name] = host
    return host


async def _nothing() -> None:
    return None


def own_threads() -> list[threading.Thread]:
    threads = [t for h in _hosts.values() for t in h.threads()] + _abandoned
    if _watchdog.thread is not None:
        threads.append(_watchdog.thread)
    return threads


def close_hosts() -> None:
    hosts = list(_hosts.values())
    _hosts.clear()
    for host in hosts:
        with contextlib.suppress(Exception):
            host.close()
    if _hang_handler_installed and _HANG_SIGNAL is not None and sys.platform != "win32":
        with contextlib.suppress(ValueError):
            signal.signal(_HANG_SIGNAL, signal.SIG_DFL)
