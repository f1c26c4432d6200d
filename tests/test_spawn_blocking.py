"""bridge.spawn_blocking under every runtime."""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

import pytest
import sniffio

import bridge
from bridge import CapacityLimiter, Context, NoRuntimeError
from tests.runtimes import Driver

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_result_error_and_worker_context(driver: Driver) -> None:
    def work(x: int) -> tuple[int, Context, str, bool]:
        try:
            sniffio.current_async_library()
            sniffed = "found"
        except sniffio.AsyncLibraryNotFoundError:
            sniffed = "none"
        return x * 2, bridge.current_context(), VAR.get() + "/" + sniffed, True

    def fails() -> None:
        raise KeyError("in the worker")

    async def main() -> tuple[Any, Context]:
        VAR.set("from the task")
        result = await bridge.spawn_blocking(work, 21)
        with pytest.raises(KeyError, match="in the worker"):
            await bridge.spawn_blocking(fails)
        return result, bridge.current_context()

    (value, ctx, seen, _), task_ctx = driver.run(main)
    assert value == 42
    assert (ctx.role, ctx.runtime, ctx.can_block) == ("worker", driver.runtime, True)
    assert ctx.token == task_ctx.token
    assert seen == "from the task/none", "contextvars copied in; no async library in the worker"


def test_threads_are_reused(driver: Driver) -> None:
    async def main() -> set[int]:
        return {await bridge.spawn_blocking(threading.get_ident) for _ in range(5)}

    assert len(driver.run(main)) == 1, "sequential calls reuse one idle thread"


def test_cancel_waits_for_fn_and_check_cancelled_raises(driver: Driver) -> None:
    """The awaiting task times out: fn sees the owner's cancellation through
    check_cancelled(), and the task goes on only after fn has returned."""
    log: list[str] = []
    started = threading.Event()

    def cooperative() -> None:
        started.set()
        try:
            for _ in range(1000):
                time.sleep(0.005)
                bridge.check_cancelled()
        except BaseException as exc:
            log.append(f"fn saw {type(exc).__name__}")
            raise

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await _with_timeout(driver, 0.05, bridge.spawn_blocking(cooperative))
        log.append("task went on")

    driver.run(main)
    assert log == [f"fn saw {type(bridge_cancel(driver)).__name__}", "task went on"]


def bridge_cancel(driver: Driver) -> BaseException:
    import adapters

    return adapters.get(driver.runtime).cancel_exception()


def test_abandon_on_cancel_returns_at_once(driver: Driver) -> None:
    release = threading.Event()
    finished = threading.Event()

    def stubborn() -> None:
        release.wait(10)
        finished.set()

    async def main() -> bool:
        cancelled_early = False
        try:
            await _with_timeout(
                driver, 0.05, bridge.spawn_blocking(stubborn, abandon_on_cancel=True)
            )
        except TimeoutError:
            cancelled_early = not finished.is_set()
        return cancelled_early

    assert driver.run(main) is True
    release.set()
    assert finished.wait(10)


async def _with_timeout(driver: Driver, seconds: float, awaitable: Any) -> Any:
    import adapters

    return await adapters.get(driver.runtime).timeout(seconds, awaitable)


def test_limiter_bounds_concurrency(driver: Driver) -> None:
    limiter = CapacityLimiter(2)
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    async def main() -> None:
        await _gather(
            driver, [lambda: bridge.spawn_blocking(job, limiter=limiter) for _ in range(6)]
        )

    driver.run(main)
    assert peak[0] == 2
    assert limiter.statistics() == {"total": 2, "borrowed": 0, "waiting": 0}


async def _gather(driver: Driver, calls: list[Any]) -> None:
    if driver.runtime == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for call in calls:
                nursery.start_soon(call)
    elif driver.runtime == "curio":
        import curio

        async with curio.TaskGroup() as group:
            for call in calls:
                await group.spawn(call)
    elif driver.runtime == "pet_executor":
        import pet_executor

        await pet_executor.join(*(call() for call in calls))
    else:
        import asyncio

        await asyncio.gather(*(call() for call in calls))


def test_outside_a_loop_is_an_error_with_the_fix() -> None:
    import asyncio

    coro = bridge.spawn_blocking(print)
    with pytest.raises(NoRuntimeError, match="needs a running event loop"):
        coro.send(None)
    coro.close()
    assert asyncio  # the call above never reached a loop


def test_limiter_rejects_zero() -> None:
    with pytest.raises(ValueError, match="total >= 1"):
        CapacityLimiter(0)


# -- trio: the waiting task runs its worker's block_on --------------------------


@pytest.fixture
def trio_mod() -> Any:
    return pytest.importorskip("trio")


def test_trio_worker_block_on_runs_on_the_workers_own_run(trio_mod: Any) -> None:
    trio = trio_mod

    async def where(label: str) -> tuple[object, str]:
        seen = VAR.get()
        VAR.set("changed in the work")
        if label == "fail":
            raise LookupError("from the work")
        return (trio.lowlevel.current_trio_token(), threading.get_ident()), seen

    def in_worker() -> tuple[object, str, str]:
        VAR.set("the worker's")
        task, seen = bridge.block_on(where, "ok")
        with pytest.raises(LookupError, match="from the work"):
            bridge.block_on(where, "fail")
        return task, seen, VAR.get()

    async def main() -> None:
        VAR.set("the task's")
        task, seen, after = await bridge.spawn_blocking(in_worker)
        assert task == (trio.lowlevel.current_trio_token(), threading.get_ident())
        assert (seen, after) == ("the worker's", "the worker's"), "a copy in, nothing back"
        assert VAR.get() == "the task's"

    trio.run(main)


def test_trio_waiter_cancelled_meanwhile_does_not_cancel_the_work(trio_mod: Any) -> None:
    trio = trio_mod
    log: list[str] = []

    async def work() -> str:
        await trio.sleep(0.05)
        return "work finished"

    def in_worker() -> None:
        log.append(bridge.block_on(work))

    async def main() -> None:
        with trio.move_on_after(0.01) as scope:
            await bridge.spawn_blocking(in_worker)
        # The worker returned normally: its result came back, as trio's own
        # workers do; the cancellation waits for the next checkpoint.
        assert scope.cancel_called
        log.append("task went on")

    trio.run(main)
    assert log == ["work finished", "task went on"]


def test_trio_worker_block_on_timeout_cancels_the_served_work(trio_mod: Any) -> None:
    trio = trio_mod
    log: list[str] = []

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            log.append("cleanup ran")

    def in_worker() -> None:
        with pytest.raises(TimeoutError):
            bridge.block_on(forever, timeout=0.02)
        log.append("worker went on")

    trio.run(bridge.spawn_blocking, in_worker)
    assert log == ["cleanup ran", "worker went on"]


def test_trio_worker_left_by_its_waiter_still_reaches_the_run(trio_mod: Any) -> None:
    trio = trio_mod
    release = threading.Event()

    async def current() -> object:
        return trio.lowlevel.current_task()

    def in_worker() -> object:
        release.wait(10)
        return bridge.block_on(current)

    async def main() -> None:
        box: list[object] = []

        def worker() -> None:
            box.append(in_worker())
            token.run_sync_soon(done.set)

        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        async def left() -> None:
            with trio.move_on_after(0.01):
                await bridge.spawn_blocking(worker, abandon_on_cancel=True)
            release.set()

        await left()
        await done.wait()
        assert len(box) == 1
        assert box[0] is not trio.lowlevel.current_task(), "a task of the run, not ours"

    trio.run(main)
