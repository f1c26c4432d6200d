"""Tasks: spawn, join handles, abort, detach, dropping a handle, join and select."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import AsyncIterator

import pytest

import pet_executor as pe
from pet_executor.lowlevel import Kernel
from tests.child_process import Child

from ._helpers import Gate

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found,unused-ignore]


def test_run_returns_the_result_and_reraises_errors() -> None:
    async def add(a: int, b: int) -> int:
        await pe.sleep(0)
        return a + b

    async def fails() -> None:
        raise KeyError("boom")

    assert pe.run(add, 2, 3) == 5
    with pytest.raises(KeyError, match="boom"):
        pe.run(fails)


def test_run_refuses_a_coroutine_object_and_says_what_to_write() -> None:
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match=r"you want `pet_executor.run\(main, ...\)`"):
        pe.run(main())  # type: ignore[arg-type]


def test_spawn_refuses_a_sync_function_and_says_why() -> None:
    def sync() -> int:
        return 1

    async def main() -> None:
        with pytest.raises(TypeError, match=r"Probably .*sync is a sync function"):
            pe.spawn(sync)  # type: ignore[arg-type]  # what a type checker catches too

    pe.run(main)


def test_join_handle_gives_result_to_every_awaiter() -> None:
    async def child() -> str:
        await pe.sleep(0)
        return "result"

    async def main() -> list[str]:
        handle = pe.spawn(child)

        async def waiter() -> str:
            value: str = await handle
            return value

        others = [pe.spawn(waiter) for _ in range(3)]
        first = await handle
        return [first, await handle] + [await other for other in others]

    assert pe.run(main) == ["result"] * 5


def test_join_handle_reraises_the_task_error() -> None:
    async def child() -> None:
        await pe.sleep(0)
        raise ValueError("child failed")

    async def main() -> None:
        handle = pe.spawn(child)
        with pytest.raises(ValueError, match="child failed"):
            await handle

    pe.run(main)


def test_current_task_and_its_name() -> None:
    async def child() -> str:
        return pe.current_task().name

    async def main() -> tuple[str, str, str]:
        named = pe.spawn(child, name="worker-1")
        default = pe.spawn(child)
        return pe.current_task().name, await named, await default

    main_name, named, default = pe.run(main)
    assert main_name.endswith("main")
    assert named == "worker-1"
    assert default.endswith("child")


def test_current_task_outside_a_task_raises() -> None:
    import bridge

    with pytest.raises(bridge.NoRuntimeError, match="outside a pet_executor task"):
        pe.current_task()


def test_abort_runs_finally_once_and_the_handle_raises_cancelled() -> None:
    events: list[str] = []

    async def child() -> None:
        try:
            events.append("started")
            await pe.Event().wait()
            events.append("never")
        finally:
            events.append("finally")

    async def main() -> None:
        handle = pe.spawn(child)
        await pe.sleep(0)
        handle.abort()
        handle.abort()  # idempotent
        with pytest.raises(pe.Cancelled, match="was aborted"):
            await handle
        assert handle.task.cancelled()
        # Nothing of the task runs after it finished cancelling.
        for _ in range(3):
            await pe.sleep(0)
        handle.abort()  # abort after completion: no effect

    pe.run(main)
    assert events == ["started", "finally"]


def test_finally_that_awaits_is_cancelled_unless_shielded() -> None:
    events: list[str] = []

    async def child() -> None:
        try:
            await pe.Event().wait()
        finally:
            with pytest.raises(pe.Cancelled):
                await pe.sleep(0)  # still cancelled: every await is a cancel point
            with pe.shield():
                await pe.sleep(0)  # shielded cleanup may await
                events.append("shielded cleanup ran")

    async def main() -> None:
        handle = pe.spawn(child)
        await pe.sleep(0)
        handle.abort()
        with pytest.raises(pe.Cancelled):
            await handle

    pe.run(main)
    assert events == ["shielded cleanup ran"]


def test_abort_before_the_first_step_runs_nothing() -> None:
    ran: list[str] = []

    async def child() -> None:
        try:
            ran.append("body")
        finally:
            ran.append("finally")

    async def main() -> None:
        handle = pe.spawn(child)
        handle.abort()
        with pytest.raises(pe.Cancelled):
            await handle

    pe.run(main)
    assert ran == [], "a future dropped before its first poll never runs"


def test_a_task_that_catches_cancelled_is_cancelled_again_at_its_next_await() -> None:
    async def child() -> str:
        with contextlib.suppress(pe.Cancelled):
            await pe.Event().wait()
        try:
            await pe.sleep(0)
        except pe.Cancelled:
            return "cancelled twice"
        return "ran on"

    async def main() -> str:
        handle = pe.spawn(child)
        await pe.sleep(0)
        handle.abort()
        value: str = await handle
        return value

    assert pe.run(main) == "cancelled twice"


def test_dropping_an_unawaited_handle_aborts_the_task() -> None:
    events: list[str] = []

    async def child() -> None:
        try:
            await pe.Event().wait()
        finally:
            events.append("finally")

    async def main() -> None:
        handle = pe.spawn(child)
        await pe.sleep(0)
        task = handle.task
        del handle  # the last reference: cancel is drop
        await pe.sleep(0)
        assert task.cancelled()

    pe.run(main)
    assert events == ["finally"]


def test_spawn_as_a_statement_warns_that_the_task_never_runs() -> None:
    ran: list[str] = []

    async def child() -> None:
        ran.append("child")

    async def main() -> None:
        with pytest.warns(RuntimeWarning, match=r"dropped before the task started.*\.detach\(\)"):
            pe.spawn(child)
        await pe.sleep(0)

    pe.run(main)
    assert ran == []


def test_awaiting_spawn_directly_keeps_the_task_alive() -> None:
    async def child() -> str:
        await pe.sleep(0)
        return "awaited"

    async def main() -> str:
        value: str = await pe.spawn(child)
        return value

    assert pe.run(main) == "awaited"


def test_detach_lets_the_task_run_on_and_its_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = []

    async def child() -> None:
        await pe.sleep(0)
        done.append(True)
        raise RuntimeError("nobody is watching")

    async def main() -> None:
        pe.spawn(child).detach()
        for _ in range(3):
            await pe.sleep(0)

    with caplog.at_level(logging.ERROR, logger="pet_executor"):
        pe.run(main)
    assert done == [True]
    assert "failed and nobody awaited it" in caplog.text
    assert "nobody is watching" in caplog.text


def test_a_dropped_handle_of_a_failed_task_logs_the_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def child() -> None:
        raise RuntimeError("lost result")

    async def main() -> None:
        handle = pe.spawn(child)
        await pe.sleep(0)
        assert handle.done()
        del handle

    with caplog.at_level(logging.ERROR, logger="pet_executor"):
        pe.run(main)
    assert "lost result" in caplog.text


def test_tasks_left_running_are_cancelled_when_main_returns() -> None:
    events: list[str] = []

    async def forever() -> None:
        try:
            while True:
                await pe.sleep(0)
        finally:
            events.append("cleaned up")

    async def main() -> str:
        pe.spawn(forever).detach()
        await pe.sleep(0)
        return "main done"

    assert pe.run(main) == "main done"
    assert events == ["cleaned up"]


def test_each_task_has_its_own_contextvars() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def child() -> tuple[str, str]:
        seen = var.get()
        var.set("child")
        await pe.sleep(0)
        return seen, var.get()

    async def main() -> tuple[tuple[str, str], str]:
        var.set("parent")
        handle = pe.spawn(child)
        var.set("parent, later")
        result = await handle
        return result, var.get()

    assert pe.run(main) == (("parent", "child"), "parent, later")


def test_sniffio_names_the_runtime() -> None:
    import sniffio

    async def main() -> str:
        return sniffio.current_async_library()

    assert pe.run(main) == "pet_executor"
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


def test_awaiting_another_runtimes_future_raises_wrong_runtime() -> None:
    import asyncio

    import bridge

    async def main() -> None:
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(bridge.WrongRuntimeError, match="awaited an object of asyncio"):
                await loop.create_future()
        finally:
            loop.close()

    pe.run(main)


def test_an_abandoned_async_generator_is_closed_in_a_task() -> None:
    events: list[str] = []

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            await pe.sleep(0)  # its cleanup may await
            events.append("generator closed")

    async def main() -> None:
        gen = numbers()
        assert await gen.__anext__() == 0
        del gen
        for _ in range(3):
            await pe.sleep(0)
        assert events == ["generator closed"]

    pe.run(main)


# -- join and select ------------------------------------------------------------


async def _value(v: int, turns: int = 1) -> int:
    for _ in range(turns):
        await pe.sleep(0)
    return v


async def _fail(exc: BaseException, turns: int = 1) -> None:
    for _ in range(turns):
        await pe.sleep(0)
    raise exc


def test_join_returns_results_in_order() -> None:
    async def main() -> tuple[int, ...]:
        return await pe.join(_value(1, 3), _value(2, 1), _value(3, 2))

    assert pe.run(main) == (1, 2, 3)
    assert pe.run(lambda: pe.join()) == ()


def test_join_first_failure_cancels_siblings_after_their_cleanup() -> None:
    events: list[str] = []

    async def slow() -> None:
        try:
            await pe.Event().wait()
        finally:
            events.append("sibling cleaned up")

    async def main() -> None:
        with pytest.raises(ValueError, match="first"):
            await pe.join(slow(), _fail(ValueError("first")))
        events.append("join raised")

    pe.run(main)
    assert events == ["sibling cleaned up", "join raised"]


def test_join_several_failures_surface_as_an_exception_group() -> None:
    async def fails_on_cancel() -> None:
        try:
            await pe.Event().wait()
        finally:
            raise KeyError("cleanup failed")

    async def main() -> None:
        with pytest.raises(ExceptionGroup) as info:
            await pe.join(fails_on_cancel(), _fail(ValueError("first")))
        group = info.value
        assert [type(e) for e in group.exceptions] == [ValueError, KeyError]
        assert "2 tasks failed" in str(group)

    pe.run(main)


def test_join_cancelled_from_outside_cancels_and_waits_for_children() -> None:
    events: list[str] = []

    async def child(name: str) -> None:
        try:
            await pe.Event().wait()
        finally:
            events.append(name)

    async def main() -> None:
        with pe.CancelScope() as scope:
            handle = pe.spawn(pe.join, child("a"), child("b"))
            await pe.sleep(0)
            await pe.sleep(0)
            handle.abort()
            with pytest.raises(pe.Cancelled):
                await handle
            scope.cancel()
        assert sorted(events) == ["a", "b"]

    pe.run(main)


def test_select_returns_the_first_and_cancels_the_rest() -> None:
    events: list[str] = []

    async def slow() -> int:
        try:
            await pe.sleep(10)
            return 0
        finally:
            events.append("loser cleaned up")

    async def main() -> tuple[int, int]:
        result = await pe.select(slow(), _value(7, 2))
        events.append("select returned")
        return result

    assert pe.run(main, clock=pe.MockClock()) == (1, 7)
    assert events == ["loser cleaned up", "select returned"]


def test_select_raises_the_winners_error() -> None:
    async def main() -> None:
        with pytest.raises(OSError, match="winner"):
            await pe.select(pe.sleep(10), _fail(OSError("winner")))

    pe.run(main, clock=pe.MockClock())


def test_select_of_nothing_is_an_error() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="at least one"):
            await pe.select()

    pe.run(main)


def test_join_of_many_tasks() -> None:
    async def main() -> int:
        results = await pe.join(*[_value(i) for i in range(2000)])
        return sum(results)

    assert pe.run(main) == sum(range(2000))


def test_a_kernel_can_be_stepped_by_hand() -> None:
    kernel = Kernel()
    gate = Gate()
    handle = kernel.spawn(lambda: gate)
    kernel.run_until_stalled()
    assert not handle.done()
    gate.is_open = True
    assert gate.waker is not None
    gate.waker.wake()
    kernel.run_until_stalled()
    assert handle.done()
    kernel.close()
    with pytest.raises(RuntimeError, match="closed"):
        kernel.run_until_stalled()


def test_keyboard_interrupt_in_a_task_ends_the_run_after_cleanup() -> None:
    events: list[str] = []

    async def other() -> None:
        try:
            await pe.Event().wait()
        finally:
            events.append("other cleaned up")

    async def main() -> None:
        pe.spawn(other).detach()
        await pe.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pe.run(main)
    assert events == ["other cleaned up"]


def _interrupted_when_ready(code: str) -> tuple[str, str, int]:
    """Run ``code`` in a child process and send it SIGINT once it prints
    "ready"; return what it printed after that, its stderr and exit code."""
    child = Child(code)
    child.expect("ready")
    child.interrupt()
    returncode, err = child.finish(timeout=30)
    return "\n".join(child.lines[child.lines.index("ready") + 1 :]), err, returncode


def test_ctrl_c_while_the_kernel_idles_cancels_the_tasks_and_runs_their_cleanup() -> None:
    """A real SIGINT, in a subprocess: the kernel is blocked waiting for work."""
    out, err, returncode = _interrupted_when_ready(
        """
        import pet_executor as pe

        async def worker():
            try:
                await pe.Event().wait()
            finally:
                print("cleanup ran", flush=True)

        async def main():
            handle = pe.spawn(worker)
            await pe.sleep(0)
            print("ready", flush=True)
            await handle

        try:
            pe.run(main)
        except KeyboardInterrupt:
            print("KeyboardInterrupt reached the caller", flush=True)
        """
    )
    assert out.split() == ["cleanup", "ran", "KeyboardInterrupt", "reached", "the", "caller"], err
    assert returncode == 0


def test_ctrl_c_that_does_not_interrupt_the_idle_wait_still_reaches_the_caller() -> None:
    """A signal that lands just before the idle wait blocks does not interrupt
    it (nor does one taken by another thread): its handler runs once the wait
    returns. Here the main thread blocks SIGINT, so another thread takes it;
    the kernel must still see the KeyboardInterrupt, soon."""
    out, err, returncode = _interrupted_when_ready(
        """
        import signal
        import threading
        import pet_executor as pe

        threading.Thread(target=threading.Event().wait, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

        async def main():
            try:
                print("ready", flush=True)
                await pe.Event().wait()
            finally:
                print("cleanup ran", flush=True)

        try:
            pe.run(main)
        except KeyboardInterrupt:
            print("KeyboardInterrupt reached the caller", flush=True)
        """
    )
    assert out.split() == ["cleanup", "ran", "KeyboardInterrupt", "reached", "the", "caller"], err
    assert returncode == 0
