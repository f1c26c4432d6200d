"""Greenlet portals (bridge._portal): sync code inside a task awaits on the
task's own loop, on asyncio, asyncio+uvloop, trio and curio; the ways a task
gets a portal (with_portal, ensure_portal, the asyncio task factory, the trio
instrument, the curio task class); detection through current_context()."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import inspect
import sys
import threading
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import greenlet  # type: ignore[import-untyped]
import pytest

from bridge import ContextPanic, current_context
from bridge._portal import (
    asyncio_portal_task_factory,
    curio_portal_task_class,
    ensure_portal,
    has_portal,
    install_asyncio_portals,
    portal_await,
    trio_portal_instrument,
    with_portal,
)
from tests.runtimes import Driver, driver_params

ASYNCIO = driver_params(lambda d: d.runtime == "asyncio")
TRIO = driver_params(lambda d: d.runtime == "trio")
CURIO = driver_params(lambda d: d.runtime == "curio")


def run_with_portal(driver: Driver, body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``body()`` as the main function, the runtime's way, with a portal."""
    return driver.run(lambda: with_portal(body()))


def cancel_exception(driver: Driver) -> type[BaseException]:
    import adapters

    return type(adapters.get(driver.runtime).cancel_exception())


async def spawn_then_cancel(
    driver: Driver, coro: Coroutine[Any, Any, Any], started: Callable[[], Awaitable[Any]]
) -> bool:
    """Run ``coro`` as a child task, wait for ``started()``, cancel the child
    the runtime's way; return whether the child ended cancelled."""
    if driver.runtime == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: coro)
            await started()
            nursery.cancel_scope.cancel()
        return nursery.cancel_scope.cancelled_caught
    if driver.runtime == "curio":
        import curio

        task = await curio.spawn(coro)
        await started()
        await task.cancel()
        return bool(task.cancelled)
    if driver.runtime == "pet_executor":
        import pet_executor

        handle = pet_executor.spawn(coro)
        await started()
        handle.abort()
        try:
            await handle
        except pet_executor.Cancelled:
            return True
        return False  # pragma: no cover - it was not cancelled
    child = asyncio.get_running_loop().create_task(coro)
    await started()
    child.cancel()
    with pytest.raises(asyncio.CancelledError):
        await child
    return child.cancelled()


# --- Awaiting through the portal, on every runtime ---------------------------


def test_sync_code_gets_results_through_the_portal(driver: Driver) -> None:
    """portal_await returns the result of an awaitable that suspends, one that
    does not, and a non-coroutine awaitable, all on the task's own thread."""
    loop_thread = threading.get_ident()
    threads_seen: list[int] = []

    async def suspends(x: int) -> int:
        await driver.sleep(0)
        threads_seen.append(threading.get_ident())
        return x * 2

    async def does_not_suspend(x: int) -> int:
        return x + 1

    def sync_caller() -> tuple[int, int, int]:
        return (
            portal_await(suspends(21)),
            portal_await(does_not_suspend(1)),
            portal_await(_AwaitableObject(suspends(4))),
        )

    async def body() -> tuple[int, int, int]:
        return sync_caller()

    assert run_with_portal(driver, body) == (42, 2, 8)
    assert threads_seen == [loop_thread, loop_thread]


class _AwaitableObject:
    """An awaitable that is not a coroutine (a custom __await__)."""

    def __init__(self, coro: Coroutine[Any, Any, int]) -> None:
        self._coro = coro

    def __await__(self) -> Any:
        return self._coro.__await__()


def test_a_portal_await_starts_no_thread(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """No thread is started, and the set of threads is the same while the
    portal awaits (the awaited code runs on the task's thread, suspended
    through a greenlet switch)."""
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self)
        real_start(self)

    async def awaited() -> tuple[set[int], int]:
        await driver.sleep(0)
        return {t.ident for t in threading.enumerate() if t.ident}, threading.get_ident()

    def sync_caller() -> tuple[set[int], int]:
        return portal_await(awaited())

    async def body() -> tuple[set[int], set[int], int, int]:
        before = {t.ident for t in threading.enumerate() if t.ident}
        monkeypatch.setattr(threading.Thread, "start", counting_start)
        during, ident = sync_caller()
        monkeypatch.undo()
        return before, during, ident, threading.get_ident()

    before, during, awaited_on, task_on = run_with_portal(driver, body)
    assert started == []
    assert during == before
    assert awaited_on == task_on


def test_exceptions_keep_type_identity_and_traceback(driver: Driver) -> None:
    """An exception raised after a suspension reaches the sync caller as the
    same object, with the awaited code's frames in its traceback; uncaught, it
    leaves the task with the sync frames as well."""
    raised: list[BaseException] = []

    class Boom(Exception):
        pass

    async def fail_later() -> None:
        await driver.sleep(0)
        error = Boom("from the awaited code")
        raised.append(error)
        raise error

    def sync_caller() -> None:
        portal_await(fail_later())

    async def body() -> tuple[BaseException, list[str]]:
        try:
            sync_caller()
        except Boom as exc:
            return exc, [f.name for f in traceback.extract_tb(exc.__traceback__)]
        raise AssertionError("no exception")  # pragma: no cover

    caught, names = run_with_portal(driver, body)
    assert caught is raised[0]
    assert names[-1] == "fail_later"
    assert names.index("sync_caller") < names.index("fail_later")

    async def body_uncaught() -> None:
        sync_caller()

    with pytest.raises(Boom) as info:
        run_with_portal(driver, body_uncaught)
    assert info.value is raised[1]
    names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "body_uncaught" in names
    assert names.index("sync_caller") < names.index("fail_later")


def test_ten_deep_nesting_on_one_thread(driver: Driver) -> None:
    """sync -> async -> sync -> ... ten levels deep, each level suspending:
    results come back up, an exception from the bottom crosses every level."""
    depth = 10
    threads: set[int] = set()

    async def level(n: int, fail: bool) -> int:
        await driver.sleep(0)
        threads.add(threading.get_ident())
        if n == depth:
            if fail:
                raise LookupError(f"bottom at {n}")
            return n
        return sync_level(n + 1, fail) + 1

    def sync_level(n: int, fail: bool) -> int:
        result = portal_await(level(n, fail))
        assert has_portal()
        return result

    async def body() -> tuple[int, list[str]]:
        result = sync_level(1, False)
        try:
            sync_level(1, True)
        except LookupError as exc:
            names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
            return result, names
        raise AssertionError("no exception")  # pragma: no cover

    result, names = run_with_portal(driver, body)
    assert result == depth + depth - 1
    assert names.count("sync_level") == depth
    assert names.count("level") == depth
    assert len(threads) == 1


def test_cancellation_crosses_the_portal(driver: Driver) -> None:
    """Cancelling a task while its sync code awaits through the portal raises
    the runtime's cancellation inside the awaited code, then out through the
    sync frames, and the task ends cancelled, the normal way."""
    seen: list[str] = []
    expected = cancel_exception(driver)

    async def main() -> bool:
        set_started, wait_started = driver.event()
        _, wait_never = driver.event()  # never set

        async def wait_forever() -> None:
            try:
                await wait_never()
            except expected:
                seen.append("awaited code saw the cancellation")
                raise

        def sync_caller() -> None:
            # Set from sync code: curio's event.set() is async when its caller is.
            set_started()  # the child suspends in this same step, before main runs again
            try:
                portal_await(wait_forever())
            finally:
                seen.append("sync frame unwound")

        async def child() -> None:
            try:
                sync_caller()
            except expected:
                seen.append("task saw the cancellation")
                raise
            seen.append("not reached")  # pragma: no cover

        return await spawn_then_cancel(driver, with_portal(child()), wait_started)

    assert driver.run(main) is True
    assert seen == [
        "awaited code saw the cancellation",
        "sync frame unwound",
        "task saw the cancellation",
    ]


def test_contextvars_are_the_tasks_own(driver: Driver) -> None:
    """Sync code and the code it awaits see the task's context variables, and
    what they set is visible to the task afterwards."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def awaited() -> str:
        await driver.sleep(0)
        seen = var.get()
        var.set("set in the awaited code")
        return seen

    def sync_caller() -> tuple[str, str]:
        before = var.get()
        inside = portal_await(awaited())
        return before, inside

    async def body() -> tuple[str, str, str]:
        var.set("set in the task")
        before, inside = sync_caller()
        return before, inside, var.get()

    assert run_with_portal(driver, body) == (
        "set in the task",
        "set in the task",
        "set in the awaited code",
    )


def test_current_context_reports_the_portal(driver: Driver) -> None:
    """portal=True in a task with a portal, in sync code it calls and in code
    awaited through the portal; False in the same task outside the portal, in
    a loop callback, and in the runtime's worker thread."""

    async def awaited() -> bool:
        await driver.sleep(0)
        return current_context().portal

    def sync_caller() -> tuple[bool, bool]:
        return current_context().portal, portal_await(awaited())

    async def with_one() -> dict[str, bool]:
        in_sync, in_awaited = sync_caller()
        seen = {"task": current_context().portal, "sync": in_sync, "awaited": in_awaited}
        seen["worker"] = (await driver.offloads[0].call(current_context)).portal
        if driver.callback is not None:
            seen["callback"] = (await driver.callback(current_context)).portal
        return seen

    async def main() -> dict[str, bool]:
        seen = await with_portal(with_one())
        seen["same task, outside the portal"] = current_context().portal
        seen["has_portal outside"] = has_portal()
        return seen

    seen = driver.run(main)
    assert seen.pop("task") is seen.pop("sync") is seen.pop("awaited") is True
    assert set(seen.values()) == {False}
    assert "worker" in seen
    assert ("callback" in seen) is (driver.callback is not None)


def test_no_portal_is_a_clear_error(driver: Driver) -> None:
    """portal_await in a task without a portal raises a ContextPanic (a
    RuntimeError) that names the fixes, and closes the coroutine it was given."""

    async def work() -> int:
        return 1  # pragma: no cover

    async def main() -> tuple[bool, BaseException, str]:
        coro = work()
        try:
            portal_await(coro)
        except RuntimeError as exc:
            return has_portal(), exc, inspect.getcoroutinestate(coro)
        raise AssertionError("no error")  # pragma: no cover

    portal, error, state = driver.run(main)
    assert portal is False
    assert isinstance(error, ContextPanic)
    assert "no greenlet portal" in str(error)
    assert "ensure_portal" in str(error)
    assert state == inspect.CORO_CLOSED


# --- Errors outside any task -------------------------------------------------


def test_portal_await_in_plain_sync_code_is_a_clear_error() -> None:
    async def work() -> int:
        return 1  # pragma: no cover

    coro = work()
    with pytest.raises(ContextPanic, match="no greenlet portal"):
        portal_await(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert has_portal() is False


def test_ensure_portal_outside_any_runtime_is_a_clear_error() -> None:
    coro = ensure_portal()
    with pytest.raises(ContextPanic, match="outside any runtime") as info:
        coro.send(None)
    assert "bridge.run" in str(info.value)


def test_portal_await_rejects_what_is_not_awaitable() -> None:
    async def work() -> int:
        return 1  # pragma: no cover

    async def body() -> list[str]:
        messages = []
        for bad in (work, 42):
            with pytest.raises(TypeError) as info:
                portal_await(bad)  # type: ignore[arg-type]
            messages.append(str(info.value))
        return messages

    by_function, by_value = asyncio.run(with_portal(body()))
    assert "you want `portal_await(work())`" in by_function
    assert "42" in by_value
    assert "Probably" not in by_value
    with pytest.raises(TypeError, match="with_portal"):
        with_portal(work)  # type: ignore[arg-type, unused-coroutine]


def test_a_dropped_portal_coroutine_closes_its_coroutine_quietly() -> None:
    """with_portal(coro) closed before it ran closes coro, with no
    "never awaited" warning for it."""

    async def work() -> int:
        return 1  # pragma: no cover

    coro = work()
    shim = with_portal(coro)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shim.close()
        del shim
        gc.collect()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert caught == []


def test_closing_a_suspended_portal_coroutine_from_another_thread() -> None:
    """A finaliser on another thread may close a portal coroutine: the close
    succeeds, and the wrapped coroutine's cleanup runs on the greenlet's own
    thread once the portal is freed."""
    cleanup: list[int] = []

    async def sleeper() -> None:
        try:
            await asyncio.sleep(0)
        finally:
            cleanup.append(threading.get_ident())

    shims = [with_portal(sleeper())]
    assert shims[0].send(None) is None  # suspended inside its greenlet, in asyncio.sleep(0)
    errors: list[BaseException] = []

    def close_elsewhere() -> None:
        try:
            shims[0].close()
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    thread = threading.Thread(target=close_elsewhere)
    thread.start()
    thread.join()
    assert errors == []
    assert cleanup == []
    gc.collect()  # the close's traceback holds the driver's frame in a cycle
    greenlet.getcurrent()  # greenlet unwinds portals freed elsewhere when next used here
    assert cleanup == [threading.get_ident()]
    shims.clear()


# --- asyncio: ensure_portal and the task factory -----------------------------


@pytest.mark.parametrize("driver", ASYNCIO)
def test_ensure_portal_on_asyncio(driver: Driver) -> None:
    """ensure_portal gives the running task (asyncio's C Task) a portal from
    its next step on; a second call is a no-op; the task's result is intact."""

    async def suspends() -> str:
        await asyncio.sleep(0)
        return "awaited"

    async def child() -> tuple[bool, bool, str, bool]:
        before = has_portal()
        await ensure_portal()
        task = asyncio.current_task()
        await ensure_portal()
        same_task = task is asyncio.current_task()
        return before, current_context().portal, portal_await(suspends()), same_task

    async def main() -> tuple[tuple[bool, bool, str, bool], tuple[bool, bool, str, bool], bool]:
        first = await child()  # the main task itself
        task = asyncio.Task(child())  # a task made directly, bypassing factories
        return first, await task, has_portal()

    first, second, main_after = driver.run(main)
    assert first == second == (False, True, "awaited", True)
    assert main_after is True


@pytest.mark.parametrize("driver", ASYNCIO)
def test_ensure_portal_cancelled_at_its_yield(driver: Driver) -> None:
    """A cancellation pending when ensure_portal yields is raised inside the
    task's own code, which already runs inside the portal."""

    async def child() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        try:
            await ensure_portal()
        except asyncio.CancelledError:
            seen.append(has_portal())
            raise

    async def main() -> bool:
        task = asyncio.get_running_loop().create_task(child())
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    seen: list[bool] = []
    assert driver.run(main) is True
    assert seen == [True]


def _recording_factory(
    made: list[str],
) -> Callable[..., asyncio.Future[Any]]:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


async def _child_has_portal() -> tuple[bool, bool]:
    def sync() -> bool:
        return portal_await(_slept())

    return has_portal(), sync()


async def _slept() -> bool:
    await asyncio.sleep(0)
    return True


@pytest.mark.parametrize("driver", ASYNCIO)
def test_task_factory_chains_to_a_factory_set_before(driver: Driver) -> None:
    async def main() -> tuple[tuple[bool, bool], list[str], bool]:
        loop = asyncio.get_running_loop()
        made: list[str] = []
        user_factory = _recording_factory(made)
        loop.set_task_factory(user_factory)
        install_asyncio_portals(loop)
        install_asyncio_portals(loop)  # idempotent: one layer of portals
        result = await loop.create_task(_child_has_portal())
        return result, list(made), loop.get_task_factory() is user_factory

    result, made, get_returns_users = driver.run(main)
    assert result == (True, True)
    assert made == ["_child_has_portal"]
    assert get_returns_users is True


@pytest.mark.parametrize("driver", ASYNCIO)
def test_task_factory_chains_to_a_factory_set_after(driver: Driver) -> None:
    """A factory set after install_asyncio_portals is chained too; get returns
    it, so code that saves and restores the factory keeps the portals."""

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        made: list[str] = []
        user_factory = _recording_factory(made)
        saved = loop.get_task_factory()
        loop.set_task_factory(user_factory)
        seen: list[Any] = [saved, loop.get_task_factory() is user_factory]
        seen.append(await asyncio.ensure_future(_child_has_portal()))
        loop.set_task_factory(saved)
        seen.append(await loop.create_task(_child_has_portal()))
        seen.append(list(made))
        with pytest.raises(TypeError):
            loop.set_task_factory(42)  # type: ignore[arg-type]
        return seen

    saved, get_returns_users, with_user, after_restore, made = driver.run(main)
    assert saved is None
    assert get_returns_users is True
    assert with_user == after_restore == (True, True)
    assert made == ["_child_has_portal"]


@pytest.mark.parametrize("driver", ASYNCIO)
def test_factory_tasks_look_unstarted_until_their_first_step(driver: Driver) -> None:
    """A portal task's coroutine reports CORO_CREATED until it runs (anyio
    decides how to cancel a task by this), and a task cancelled before its
    first step closes the wrapped coroutine, without a "never awaited"
    warning (once the cancellation's traceback, which holds the shim's
    frame, is gone)."""
    inner: list[Coroutine[Any, Any, Any]] = []

    async def main() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        ran = loop.create_task(_child_has_portal())
        state = inspect.getcoroutinestate(ran.get_coro())  # type: ignore[arg-type]
        await ran
        inner.append(_child_has_portal())
        never_ran = loop.create_task(inner[0])
        never_ran.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await never_ran
        return state, never_ran.cancelled()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state, cancelled = driver.run(main)
        gc.collect()
    assert state == inspect.CORO_CREATED
    assert cancelled is True
    assert inspect.getcoroutinestate(inner[0]) == inspect.CORO_CLOSED
    assert [str(w.message) for w in caught] == []


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
@pytest.mark.parametrize("driver", ASYNCIO)
@pytest.mark.parametrize("order", ["eager factory set before", "eager factory set after"])
def test_eager_tasks_get_a_portal(driver: Driver, order: str) -> None:
    """An eager task takes its first step inside create_task, with a portal;
    a portal await that suspends there ends the eager step, and the task goes
    on later with its portal."""

    async def main() -> list[Any] | None:
        loop = asyncio.get_running_loop()
        factory = asyncio.eager_task_factory  # type: ignore[attr-defined]
        loop.set_task_factory(factory)
        probe = _slept()
        try:
            await loop.create_task(probe)
        except TypeError as exc:  # uvloop 0.21 on 3.13 passes eager_start to factories
            probe.close()
            skipped.append(str(exc))
            return None
        finally:
            loop.set_task_factory(None)
        if order == "eager factory set before":
            loop.set_task_factory(factory)
            install_asyncio_portals(loop)
        else:
            install_asyncio_portals(loop)
            loop.set_task_factory(factory)
        seen: list[Any] = []

        async def eager_child() -> str:
            seen.append(("first step", has_portal()))
            seen.append(("sync", portal_await(_slept())))
            seen.append(("after the suspension", has_portal()))
            return "done"

        task = loop.create_task(eager_child())
        seen.append("create_task returned")
        seen.append(await task)
        return seen

    skipped: list[str] = []
    seen = driver.run(main)
    if skipped:
        pytest.skip(f"eager tasks fail on this loop even without portals: {skipped[0]}")
    assert seen == [
        ("first step", True),
        "create_task returned",
        ("sync", True),
        ("after the suspension", True),
        "done",
    ]


@pytest.mark.parametrize("driver", ASYNCIO)
def test_a_task_made_inside_a_portal_gets_its_own(driver: Driver) -> None:
    """A portal task created from sync code of another portal task (inside
    its greenlet) runs with a portal of its own."""

    async def main() -> tuple[tuple[bool, bool], bool]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)

        async def parent() -> tuple[bool, bool]:
            def sync() -> asyncio.Task[tuple[bool, bool]]:
                return loop.create_task(_child_has_portal())

            return await sync()

        return await loop.create_task(parent()), has_portal()

    assert driver.run(main) == ((True, True), False)


@pytest.mark.parametrize("driver", driver_params(lambda d: d.runtime in ("asyncio", "trio")))
def test_ensure_portal_inside_with_portal_lasts(driver: Driver) -> None:
    """ensure_portal called where only a with_portal call gives a portal still
    gives the task its own, which outlives that call."""

    async def inner() -> bool:
        await ensure_portal()
        return has_portal()

    async def main() -> tuple[bool, bool, bool]:
        before = has_portal()
        inside = await with_portal(inner())
        await driver.sleep(0)
        return before, inside, has_portal()

    assert driver.run(main) == (False, True, True)


def test_a_loop_with_portals_is_freed_without_the_cycle_collector() -> None:
    import weakref

    loop = asyncio.new_event_loop()
    install_asyncio_portals(loop)
    assert loop.run_until_complete(loop.create_task(_child_has_portal())) == (True, True)
    loop.close()
    ref = weakref.ref(loop)
    gc.disable()
    try:
        del loop
        assert ref() is None
    finally:
        gc.enable()


def test_asyncio_task_factory_without_install() -> None:
    """asyncio_portal_task_factory() can be set like any factory."""

    async def main() -> tuple[bool, bool]:
        asyncio.get_running_loop().set_task_factory(asyncio_portal_task_factory())
        return await asyncio.ensure_future(_child_has_portal())

    assert asyncio.run(main()) == (True, True)


def test_a_greenlet_started_inside_a_step_uses_the_portal() -> None:
    """Another greenlet library's greenlet (SQLAlchemy's greenlet_spawn shape),
    started from a portal task, awaits through that task's portal; the
    answer goes back to it, not to the portal greenlet."""

    async def awaited() -> str:
        await asyncio.sleep(0)
        return "from the loop"

    async def body() -> tuple[str, bool, bool]:
        def in_child() -> tuple[str, bool]:
            return portal_await(awaited()), has_portal()

        child = greenlet.greenlet(in_child)
        result, had_portal = child.switch()
        return result, had_portal, child.dead

    assert asyncio.run(with_portal(body())) == ("from the loop", True, True)


def test_a_greenlet_has_the_portal_only_inside_its_tasks_step() -> None:
    """A greenlet started from a portal task has the portal when switched into
    during a step of that task (even a later one), and not while that task is
    suspended (switched into from another task)."""

    def probe(reply_to: Any) -> None:
        # Answer without finishing: a finished greenlet resumes its parent.
        reply_to.switch(has_portal())

    def ask(child: Any) -> bool:
        answer: bool = child.switch(greenlet.getcurrent())
        child.parent = greenlet.getcurrent()  # let it finish here
        child.switch()
        return answer

    async def later_step_of_the_same_task() -> bool:
        child = greenlet.greenlet(probe)
        await asyncio.sleep(0)
        return ask(child)

    async def main() -> tuple[bool, bool]:
        made: list[Any] = []

        async def portal_task() -> None:
            made.append(greenlet.greenlet(probe))
            await asyncio.sleep(10)

        task = asyncio.get_running_loop().create_task(with_portal(portal_task()))
        await asyncio.sleep(0)  # the portal task is suspended in its sleep now
        from_another_task = ask(made[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return from_another_task, await with_portal(later_step_of_the_same_task())

    from_another_task, in_a_later_step = asyncio.run(main())
    assert from_another_task is False
    assert in_a_later_step is True


# --- trio --------------------------------------------------------------------


@pytest.mark.parametrize("driver", TRIO)
def test_trio_instrument_gives_the_main_task_and_its_descendants_portals(
    driver: Driver,
) -> None:
    """System tasks and run_sync_soon callbacks get none."""
    import trio

    async def main() -> dict[str, bool]:
        seen = {"main": has_portal()}

        async def grandchild() -> None:
            seen["grandchild"] = has_portal()

        async def child() -> None:
            seen["child"] = current_context().portal
            async with trio.open_nursery() as nursery:
                nursery.start_soon(grandchild)

        system_task_done = trio.Event()

        async def system_task() -> None:
            seen["system task"] = has_portal()
            system_task_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        trio.lowlevel.spawn_system_task(system_task)
        await system_task_done.wait()
        seen["callback"] = (await driver.callback(current_context)).portal  # type: ignore[misc]
        seen["awaited"] = portal_await(_trio_awaited())
        return seen

    seen = trio.run(main, instruments=[trio_portal_instrument()])
    assert seen == {
        "main": True,
        "child": True,
        "grandchild": True,
        "system task": False,
        "callback": False,
        "awaited": True,
    }


async def _trio_awaited() -> bool:
    import trio

    await trio.sleep(0)
    return has_portal()


@pytest.mark.parametrize("driver", TRIO)
def test_ensure_portal_on_trio(driver: Driver) -> None:
    """ensure_portal gives a running trio task a portal; Ctrl-C protection is
    what it was (user code stays interruptible)."""
    import trio

    async def main() -> tuple[bool, bool, bool, bool, bool]:
        protected_before = trio.lowlevel.currently_ki_protected()
        before = has_portal()
        await ensure_portal()
        await ensure_portal()
        return (
            before,
            current_context().portal,
            portal_await(_trio_awaited()),
            protected_before,
            trio.lowlevel.currently_ki_protected(),
        )

    assert driver.run(main) == (False, True, True, False, False)


# --- curio -------------------------------------------------------------------


@pytest.mark.parametrize("driver", CURIO)
@pytest.mark.parametrize("base", ["Task", "ContextTask"])
def test_curio_task_class_gives_every_task_a_portal(driver: Driver, base: str) -> None:
    import curio
    import curio.task

    async def awaited() -> str:
        await curio.sleep(0)
        return "awaited"

    async def child() -> tuple[bool, str]:
        # has_portal, not current_context(): the curio adapter's token cannot
        # be made inside a ContextTask's step yet (unrelated to portals).
        return has_portal(), portal_await(awaited())

    async def main() -> tuple[bool, tuple[bool, str]]:
        task = await curio.spawn(child)
        return has_portal(), await task.join()

    taskcls = curio_portal_task_class(getattr(curio.task, base))
    assert issubclass(taskcls, getattr(curio.task, base))
    with curio.Kernel(taskcls=taskcls) as kernel:
        assert kernel.run(main) == (True, (True, "awaited"))


@pytest.mark.parametrize("driver", CURIO)
def test_curio_ensure_portal_is_a_clear_error(driver: Driver) -> None:
    async def main() -> BaseException:
        with pytest.raises(ContextPanic) as info:
            await ensure_portal()
        return info.value

    error = driver.run(main)
    assert "curio" in str(error)
    assert 'bridge.run(main, runtime="curio")' in str(error)


# --- Pooled workers ------------------------------------------------------------
#
# Each step of a portal task runs in a worker greenlet taken from a per-thread
# pool and given back when the step ends, unless sync code of the task is
# suspended in portal_await (or something else refers to the worker).


def run_everywhere(driver: Driver, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` with bridge.run: every task of the run has a portal."""
    import bridge

    return bridge.run(main, runtime=driver.runtime, **driver.pet_options())


async def run_children(driver: Driver, coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run each coroutine as a child task, all at once; their results, in order."""
    if driver.runtime == "trio":
        import trio

        results: list[Any] = [None] * len(coros)

        async def run_one(i: int, coro: Coroutine[Any, Any, Any]) -> None:
            results[i] = await coro

        async with trio.open_nursery() as nursery:
            for i, coro in enumerate(coros):
                nursery.start_soon(run_one, i, coro)
        return results
    if driver.runtime == "curio":
        import curio

        tasks = [await curio.spawn(coro) for coro in coros]
        return [await task.join() for task in tasks]
    if driver.runtime == "pet_executor":
        import pet_executor

        handles = [pet_executor.spawn(coro) for coro in coros]
        return [await handle for handle in handles]
    return list(await asyncio.gather(*coros))


def test_tasks_take_turns_on_a_few_pooled_workers(driver: Driver) -> None:
    """A hundred tasks, each suspending in plain awaits, run on a handful of
    greenlets that outlive them (a greenlet per task would die with it)."""
    import weakref

    seen: list[weakref.ref[Any]] = []

    async def child() -> bool:
        for _ in range(3):
            seen.append(weakref.ref(greenlet.getcurrent()))
            await driver.sleep(0)
        return has_portal()

    async def main() -> list[bool]:
        return await run_children(driver, [child() for _ in range(100)])

    assert run_everywhere(driver, main) == [True] * 100
    workers = {ref() for ref in seen}
    assert None not in workers
    assert len(workers) <= 4


@pytest.mark.parametrize("driver", driver_params(lambda d: d.runtime != "curio"))
def test_each_step_runs_in_its_own_tasks_context(driver: Driver) -> None:
    """Tasks that share workers each see their own context variables, step
    after step. (Not curio: its plain tasks share the thread's context.)"""
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=-1)

    async def child(i: int) -> list[int]:
        seen = [var.get()]
        var.set(i)
        for _ in range(3):
            await driver.sleep(0)
            seen.append(var.get())
        return seen

    async def main() -> tuple[list[list[int]], int]:
        return await run_children(driver, [child(i) for i in range(20)]), var.get()

    results, in_main = run_everywhere(driver, main)
    assert results == [[-1, i, i, i] for i in range(20)]
    assert in_main == -1


def test_an_idle_worker_keeps_nothing_of_the_task_it_ran() -> None:
    """Once a task is over, its result, its exception and its context are
    freed by reference counting: no idle worker refers to them."""
    import weakref

    from bridge._portal import _threads

    class Big:
        pass

    var: contextvars.ContextVar[Big | None] = contextvars.ContextVar("var", default=None)
    refs: list[weakref.ref[Big]] = []

    def big() -> Big:
        value = Big()
        refs.append(weakref.ref(value))
        return value

    async def returns() -> Big:
        var.set(big())
        await asyncio.sleep(0)
        return big()

    async def raises() -> None:
        await asyncio.sleep(0)
        raise LookupError(big())

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        await loop.create_task(returns())
        with pytest.raises(LookupError):
            await loop.create_task(raises())
        await asyncio.sleep(0)  # asyncio lets go of the finished tasks
        return [w.gr_context is None for w in _threads.pool]

    gc.disable()
    try:
        idle_contexts_cleared = asyncio.run(main())
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()
    assert idle_contexts_cleared
    assert all(idle_contexts_cleared)


def test_a_task_suspended_in_a_plain_await_holds_no_greenlet() -> None:
    """Suspended tasks leave the workers idle in the pool; and such a task,
    abandoned in a reference cycle, is collected, its cleanup run."""
    from bridge._portal import _threads

    async def waiter(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        # Earlier tests on this thread may have left idle workers.
        before = len(getattr(_threads, "pool", ()))
        event = asyncio.Event()
        tasks = [loop.create_task(waiter(event)) for _ in range(100)]
        await asyncio.sleep(0)  # all suspended in event.wait()
        idle = len(_threads.pool)
        event.set()
        await asyncio.gather(*tasks)
        return before, idle

    before, idle = asyncio.run(main())
    # Each step borrowed a worker and gave it back: none is held.
    assert max(before, 1) <= idle <= max(before, 2)

    cleaned: list[str] = []
    shims: list[Coroutine[Any, Any, None]] = []

    async def refers_to_itself() -> None:
        me = shims.pop()  # noqa: F841 - a cycle through this frame
        try:
            await asyncio.sleep(0)  # suspends; never resumed
        finally:
            cleaned.append("cleanup")

    shims.append(with_portal(refers_to_itself()))
    shim = shims[0]
    shim.send(None)
    del shim
    gc.collect()
    assert cleaned == ["cleanup"]


def test_a_greenlet_started_in_a_step_keeps_its_worker_across_awaits(driver: Driver) -> None:
    """SQLAlchemy's greenlet_spawn: a greenlet started in a step switches back
    to its parent with an awaitable, the task awaits it, and resumes the
    greenlet in a later step, which must run in that same parent. Other tasks
    park in portal_await meanwhile, so the pool's order changes."""

    async def io(x: int) -> int:
        await driver.sleep(0)
        return x

    class ChildGreenlet(greenlet.greenlet):  # type: ignore[misc]
        pass

    def await_only(awaitable: Awaitable[int]) -> int:
        current = greenlet.getcurrent()
        assert isinstance(current, ChildGreenlet)
        result: int = current.parent.switch(awaitable)
        return result

    async def greenlet_spawn(fn: Callable[[int], int], arg: int) -> int:
        child = ChildGreenlet(fn, greenlet.getcurrent())
        result = child.switch(arg)
        while not child.dead:
            result = child.switch(await result)
        return result  # type: ignore[no-any-return]

    def sync_work(n: int) -> int:
        return sum(await_only(io(i)) for i in range(n))

    async def uses_greenlet_spawn() -> int:
        return await greenlet_spawn(sync_work, 10)

    async def parks() -> int:
        for i in range(20):
            if i % 2:
                portal_await(driver.sleep(0))
            else:
                await driver.sleep(0)
        return -1

    async def main() -> list[int]:
        return await run_children(
            driver, [uses_greenlet_spawn() if i % 2 else parks() for i in range(20)]
        )

    assert run_everywhere(driver, main) == [45 if i % 2 else -1 for i in range(20)]


def test_a_worker_started_deep_in_a_stack_is_not_pooled() -> None:
    """A greenlet keeps the recursion depth it started at: a worker made deep
    in a stack would leave later tasks little room, so it is not kept."""

    async def noop() -> None:
        pass

    async def recurses(n: int) -> int:
        def down(k: int) -> int:
            return down(k + 1) if k < n else k

        return down(0)

    def step(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise AssertionError("suspended")  # pragma: no cover

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        else:
            step(with_portal(noop()))

    limit = sys.getrecursionlimit()
    deep(limit - 100)
    assert step(with_portal(recurses(limit // 2))) == limit // 2


def test_the_pool_keeps_a_bounded_number_of_idle_workers() -> None:
    from bridge._portal import _POOL_LIMIT, _threads

    async def parks(event: asyncio.Event) -> None:
        portal_await(event.wait())

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        event = asyncio.Event()
        tasks = [loop.create_task(parks(event)) for _ in range(_POOL_LIMIT * 2)]
        await asyncio.sleep(0)  # each holds a worker now
        while_parked = len(_threads.pool)
        event.set()
        await asyncio.gather(*tasks)
        return while_parked, len(_threads.pool)

    while_parked, after = asyncio.run(main())
    assert while_parked == 0
    assert after == _POOL_LIMIT


def test_a_step_that_raises_leaves_nothing_behind_for_the_next() -> None:
    """Tracebacks show the task's frames, not the worker's loop; the next task
    on that worker starts with no exception being handled; a task may even
    raise GreenletExit (it ends with it, the worker with it)."""

    async def fails() -> None:
        await asyncio.sleep(0)
        raise LookupError("from the task")

    async def exc_info() -> Any:
        return sys.exc_info()

    async def raises_greenlet_exit() -> None:
        await asyncio.sleep(0)
        raise greenlet.GreenletExit("from the task")

    async def main() -> tuple[list[str], Any, BaseException, bool]:
        loop = asyncio.get_running_loop()
        install_asyncio_portals(loop)
        try:
            await loop.create_task(fails())
        except LookupError as exc:
            names = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        info = await loop.create_task(exc_info())
        with pytest.raises(greenlet.GreenletExit) as raised:
            await loop.create_task(raises_greenlet_exit())
        return (
            names,
            info,
            raised.value,
            await loop.create_task(_child_has_portal()) == (True, True),
        )

    names, info, exit_error, after = asyncio.run(main())
    assert names[-1] == "fails"
    assert "_work" not in names
    assert info == (None, None, None)
    assert str(exit_error) == "from the task"
    assert after is True


@pytest.mark.parametrize("eager", [False, True], ids=["inline", "eager"])
def test_steps_taken_inside_other_steps_leave_the_workers_pooled(eager: bool) -> None:
    """A step taken inside another task's step (a with_portal coroutine
    awaited inline, a 3.12 eager task's first step) runs in a worker of its
    own, which does not make the outer task's worker look referred to: the
    same few workers serve every task."""
    import weakref

    if eager and sys.version_info < (3, 12):
        pytest.skip("eager tasks are new in Python 3.12")
    seen: list[weakref.ref[Any]] = []

    def note() -> None:
        seen.append(weakref.ref(greenlet.getcurrent()))

    async def inner(park: bool) -> int:
        note()
        if park:
            portal_await(asyncio.sleep(0))
        else:
            await asyncio.sleep(0)
        note()
        return 1

    async def outer(i: int) -> int:
        note()
        if eager:
            child = asyncio.get_running_loop().create_task(inner(i % 2 == 0))
            result = await child
        else:
            result = await with_portal(inner(i % 2 == 0))
        note()
        return result

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        if eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        install_asyncio_portals(loop)
        return [await loop.create_task(outer(i)) for i in range(50)]

    assert asyncio.run(main()) == [1] * 50
    workers = {ref() for ref in seen}
    assert None not in workers
    assert len(workers) <= 3


@pytest.mark.parametrize("suspends", [False, True], ids=["done-at-once", "suspends"])
def test_block_on_through_the_portal_copies_contextvars_in_and_back_on_request(
    driver: Driver, suspends: bool
) -> None:
    """block_on in a task's portal (its hot path for work that finishes at
    once, the portal's parking for work that suspends): the work sees the
    caller's variables, its changes come back only with copy_back=True, and
    an error keeps the work's frames."""
    import bridge

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read_and_set() -> str:
        if suspends:
            await driver.sleep(0)
        seen = var.get()
        var.set("set by the work")
        return seen

    async def fails() -> None:
        if suspends:
            await driver.sleep(0)
        raise ValueError("from the work")

    def sync_caller() -> tuple[str, str, str, str, list[str]]:
        seen = bridge.block_on(read_and_set)
        after = var.get()
        seen_again = bridge.block_on(read_and_set, copy_back=True)
        try:
            bridge.block_on(fails)
        except ValueError as error:
            frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        return seen, after, seen_again, var.get(), frames

    async def body() -> tuple[str, str, str, str, list[str]]:
        var.set("caller")
        return sync_caller()

    seen, after, seen_again, final, frames = run_with_portal(driver, body)
    assert (seen, after, seen_again, final) == ("caller", "caller", "caller", "set by the work")
    assert "fails" in frames, frames
