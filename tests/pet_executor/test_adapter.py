"""pet_executor behind the adapter interface: what the bridge builds on."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time

import pytest

import adapters
import bridge
import pet_executor as pe
from bridge._work import WorkFuture
from pet_executor.lowlevel import Kernel, current_kernel

from ._helpers import in_thread

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_the_adapter_is_registered_and_runs() -> None:
    adapter = adapters.get("pet_executor")
    assert adapter.name == "pet_executor"
    assert adapter.version()

    async def add(a: int, b: int) -> int:
        await pe.sleep(0)
        return a + b

    assert adapter.run(add, 1, 2) == 3
    assert isinstance(adapter.cancel_exception(), pe.Cancelled)
    assert adapter.detect_worker() is None


def test_adapter_timeout_raises_the_builtin_timeout_after_cleanup() -> None:
    adapter = adapters.get("pet_executor")
    cleaned: list[float] = []

    async def slow() -> str:
        try:
            await pe.sleep(60)
            return "finished"
        finally:
            cleaned.append(pe.now())

    async def quick() -> str:
        return "in time"

    async def main() -> str:
        with pytest.raises(TimeoutError):
            await adapter.timeout(5, slow())
        return await adapter.timeout(5, quick())

    assert pe.run(main, clock=pe.MockClock(autojump=True)) == "in time"
    assert cleaned == [5.0]


def test_token_for_a_kernel_is_its_token() -> None:
    adapter = adapters.get("pet_executor")
    kernel = Kernel()
    assert adapter.token_for(kernel) == kernel.token
    assert adapter.token_for(kernel).native is kernel
    with pytest.raises(TypeError, match="from a pet_executor Kernel"):
        adapter.token_for(object())
    kernel.close()


def test_spawn_work_delivers_value_error_and_runs_in_the_given_context() -> None:
    adapter = adapters.get("pet_executor")

    async def read_var() -> str:
        await pe.sleep(0)
        VAR.set("changed by the work")
        return VAR.get() + " / started as given"

    async def fails() -> None:
        raise ValueError("work failed")

    async def main() -> None:
        token = bridge.current_context().token
        assert token is not None
        context = contextvars.copy_context()
        context.run(VAR.set, "given")
        ok: WorkFuture[str] = WorkFuture("ok")
        bad: WorkFuture[None] = WorkFuture("bad")
        for future in (ok, bad):
            future.set_running_or_notify_cancel()
        adapter.spawn_work(token, read_var, context, ok)
        adapter.spawn_work(token, fails, contextvars.copy_context(), bad)
        await adapter.await_future(ok)
        with pytest.raises(ValueError, match="work failed"):
            await adapter.await_future(bad)
        assert ok.result() == "changed by the work / started as given"
        assert context[VAR] == "changed by the work"

    pe.run(main)


def test_spawn_work_cancel_is_a_request_honoured_after_cleanup() -> None:
    adapter = adapters.get("pet_executor")
    cleaned: list[str] = []

    async def long() -> None:
        try:
            await pe.Event().wait()
        finally:
            with pe.shield():
                await pe.sleep(0)
            cleaned.append("cleanup")

    async def main() -> None:
        token = bridge.current_context().token
        assert token is not None
        future: WorkFuture[None] = WorkFuture("long")
        future.set_running_or_notify_cancel()
        adapter.spawn_work(token, long, contextvars.copy_context(), future)
        await pe.sleep(0)
        in_thread(future.cancel)
        with pytest.raises(concurrent.futures.CancelledError):
            await adapter.await_future(future)
        assert cleaned == ["cleanup"]
        assert future.cancelled()

    pe.run(main)


def test_await_future_cancelled_waits_for_the_work_to_stop() -> None:
    adapter = adapters.get("pet_executor")
    future: concurrent.futures.Future[str] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # running: cancel() cannot stop it at once
    aborted = threading.Event()

    def worker() -> None:
        aborted.wait()
        future.set_result("stopped")

    async def main() -> bool:
        thread = threading.Thread(target=worker)
        thread.start()
        handle = pe.spawn(adapter.await_future, future)
        await pe.sleep(0)
        handle.abort()
        aborted.set()
        with pytest.raises(pe.Cancelled):
            await handle
        done = future.done()  # the awaiter finished cancelling only once the work stopped
        thread.join()
        return done

    assert pe.run(main)


def test_await_future_abandon_on_cancel_does_not_wait() -> None:
    adapter = adapters.get("pet_executor")
    future: concurrent.futures.Future[str] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()

    async def main() -> bool:
        handle = pe.spawn(adapter.await_future(future, abandon_on_cancel=True))
        await pe.sleep(0)
        handle.abort()
        with pytest.raises(pe.Cancelled):
            await handle
        return future.done()

    assert pe.run(main) is False
    future.set_result("late")


def test_block_on_uses_one_kernel_per_thread_again_and_again() -> None:
    result = bridge.block_on(_where, runtime="pet_executor")
    again = bridge.block_on(_where, runtime="pet_executor")
    assert result[0] == "pet_executor"
    assert result[1] == again[1], "one kernel per thread, reused"


async def _where() -> tuple[str | None, int]:
    await pe.sleep(0)
    kernel = current_kernel()
    return bridge.current_context().runtime, id(kernel)


def test_runner_runs_work_and_refuses_callbacks_between_two_runs() -> None:
    adapter = adapters.get("pet_executor")
    runner = adapter.new_runner()
    assert runner is not None
    try:
        with pytest.raises(bridge.RunFinishedError, match="paused"):
            runner.token.run_sync_soon_threadsafe(print)

        async def answer() -> str:
            await pe.sleep(0)
            return VAR.get()

        async def fails() -> None:
            raise KeyError("work failed")

        context = contextvars.copy_context()
        context.run(VAR.set, "the given context")
        assert runner.run(answer, context, None, 1.0) == ("value", "the given context")
        kind, error = runner.run(fails, contextvars.copy_context(), None, 1.0)
        assert kind == "error"
        assert isinstance(error, KeyError)
    finally:
        runner.close()


def test_runner_deadline_cancels_the_work_and_waits_for_cleanup() -> None:
    adapter = adapters.get("pet_executor")
    runner = adapter.new_runner(clock=pe.MockClock(autojump=True))
    assert runner is not None
    cleaned: list[str] = []
    try:

        async def slow() -> None:
            try:
                await pe.sleep(3600)
            finally:
                cleaned.append("cleanup")

        outcome = runner.run(slow, contextvars.copy_context(), time.monotonic() + 0.01, 1.0)
        assert outcome == ("cancelled", None)
        assert cleaned == ["cleanup"]
    finally:
        runner.close()


def test_runner_work_still_running_after_cleanup_time_stays_pending() -> None:
    adapter = adapters.get("pet_executor")
    runner = adapter.new_runner(clock=pe.MockClock(autojump=True))
    assert runner is not None
    events: list[str] = []
    try:

        async def stubborn() -> None:
            try:
                await pe.sleep(3600)
            finally:
                with pe.shield():
                    await pe.sleep(100)  # cleanup longer than the runner waits
                events.append("cleanup finished")

        outcome = runner.run(stubborn, contextvars.copy_context(), time.monotonic(), 10.0)
        assert outcome == ("pending", None)
        assert events == []

        async def later() -> str:
            await pe.sleep(200)
            return "next call"

        assert runner.run(later, contextvars.copy_context(), None, 1.0) == ("value", "next call")
        assert events == ["cleanup finished"], "the pending task went on in the next run"
    finally:
        runner.close()


def test_runner_cancel_current_cancels_the_running_work() -> None:
    adapter = adapters.get("pet_executor")
    runner = adapter.new_runner()
    assert runner is not None
    try:

        async def interrupted() -> None:
            token = bridge.current_context().token
            assert token is not None
            # What a SIGINT handler does, from this very thread, mid-run.
            token.run_sync_soon_threadsafe(runner.cancel_current)
            await pe.Event().wait()

        assert runner.run(interrupted, contextvars.copy_context(), None, 1.0) == ("cancelled", None)
    finally:
        runner.close()


def test_block_on_timeout_with_pet_executor() -> None:
    async def forever() -> None:
        await pe.Event().wait()

    with pytest.raises(TimeoutError, match="cancelled and its cleanup ran"):
        bridge.block_on(forever, runtime="pet_executor", timeout=0.01)


def test_a_pet_executor_hosting_pet_executor() -> None:
    from pet_executor._host import PetExecutor

    async def where(x: int) -> tuple[int, bridge.Context]:
        await pe.sleep(0)
        return x * 2, bridge.current_context()

    with PetExecutor("pet_executor") as pet:
        value, ctx = pet.call(where, 21)
    assert value == 42
    assert ctx.runtime == "pet_executor"
    assert ctx.hosted is True
    assert ctx.in_task is True


def test_a_run_with_portals_lets_sync_code_await_on_the_kernel() -> None:
    """``run(..., portals=True)``: every task's coroutine runs in a greenlet
    portal, so sync code it calls can await pet_executor futures in place."""
    from bridge._portal import portal_await

    adapter = adapters.get("pet_executor")

    def sync_helper(event: pe.Event) -> str:
        portal_await(event.wait())  # suspends the task, not the kernel
        return "awaited from sync code"

    async def child(event: pe.Event) -> tuple[bool, str]:
        return bridge.current_context().portal, sync_helper(event)

    async def main() -> tuple[bool, tuple[bool, str]]:
        event = pe.Event()
        handle = pe.spawn(child, event)
        await pe.sleep(0)
        assert not handle.done()
        event.set()
        return bridge.current_context().portal, await handle

    assert adapter.run(main, portals=True) == (True, (True, "awaited from sync code"))
    assert pe.run(lambda: _portal_here()) is False


async def _portal_here() -> bool:
    return bridge.current_context().portal
