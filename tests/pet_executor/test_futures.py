"""Poll, Context and Waker: the vocabulary, and hand-written futures on the kernel."""

from __future__ import annotations

import threading

import pytest

import pet_executor as pe
from pet_executor.lowlevel import Kernel, current_kernel

from ._helpers import Gate, in_thread


def test_poll_ready_and_pending() -> None:
    ready = pe.Poll.ready(3)
    assert ready.is_ready
    assert not ready.is_pending
    assert ready.value == 3
    assert pe.Poll.PENDING.is_pending
    assert not pe.Poll.PENDING.is_ready
    assert pe.Poll.ready(None) is pe.Poll.ready(None), "ready(None) is shared, allocation-free"
    assert repr(ready) == "Poll.ready(3)"
    assert repr(pe.Poll.PENDING) == "Poll.PENDING"


def test_callback_waker_wakes_and_compares() -> None:
    calls: list[int] = []

    def bump() -> None:
        calls.append(1)

    waker = pe.Waker(bump)
    assert waker.clone() is waker
    assert waker.will_wake(pe.Waker(bump)), "same callback: same effect"
    assert not waker.will_wake(pe.Waker(lambda: None))
    waker.wake()
    pe.Context(waker).waker.wake()
    assert calls == [1, 1]


def test_hand_written_future_is_inert_until_polled() -> None:
    gate = Gate()
    kernel = Kernel()
    assert gate.polls == 0
    handle = kernel.spawn(lambda: gate)
    assert gate.polls == 0, "spawning starts nothing: the task runs at the next turn"
    kernel.run_until_stalled()
    assert gate.polls == 1
    assert handle.task.state == "idle"
    kernel.close()


def test_coroutine_spawned_starts_on_the_next_turn() -> None:
    started: list[str] = []

    async def child() -> None:
        started.append("child")

    async def main() -> list[str]:
        handle = pe.spawn(child)
        seen = list(started)
        await pe.sleep(0)
        await handle
        return seen

    assert pe.run(main) == []
    assert started == ["child"]


def test_a_task_is_its_own_waker() -> None:
    async def main() -> bool:
        task = pe.current_task()
        gate = Gate()
        gate.is_open = True
        await gate
        return isinstance(task, pe.Waker) and task.will_wake(task) and task.clone() is task

    assert pe.run(main)


def test_waking_twice_polls_once() -> None:
    gate = Gate()
    kernel = Kernel()
    handle = kernel.spawn(lambda: gate)
    kernel.run_until_stalled()
    assert gate.waker is not None
    gate.waker.wake()
    gate.waker.wake()
    assert handle.task.state == "scheduled"
    kernel.run_until_stalled()
    assert gate.polls == 2
    kernel.close()


def test_wake_from_another_thread_schedules_on_the_kernel_thread() -> None:
    gate = Gate()
    kernel = Kernel()
    handle = kernel.spawn(lambda: gate)
    kernel.run_until_stalled()
    waker = gate.waker
    assert waker is not None
    in_thread(waker.wake)
    assert handle.task.state == "idle", "applied on the kernel's thread, at its next turn"
    gate.is_open = True
    kernel.run_until_stalled()
    assert handle.done()
    assert gate.polls == 2
    kernel.close()


def test_wake_from_another_thread_wakes_an_idle_kernel() -> None:
    """The kernel blocks (no timers, no sockets); a wake from a thread ends the wait."""
    seen: list[int] = []

    async def main() -> str:
        gate = Gate()
        waiting = threading.Event()
        gate.during_poll = lambda cx: waiting.set()

        def opener() -> None:
            waiting.wait()
            gate.is_open = True
            assert gate.waker is not None
            seen.append(threading.get_ident())
            gate.waker.wake()

        thread = threading.Thread(target=opener)
        thread.start()
        try:
            return await gate
        finally:
            thread.join()

    assert pe.run(main) == "opened"
    assert len(seen) == 1
    assert seen[0] != threading.get_ident()


def test_idle_without_sockets_the_kernel_waits_on_a_thread_primitive() -> None:
    """No socket was ever watched: no selector (and no socketpair) exists,
    yet a wake from another thread ends the kernel's idle wait."""

    async def main() -> bool:
        event = pe.Event()
        waiter = pe.spawn(event.wait)
        await pe.sleep(0)
        thread = threading.Thread(target=event.set)
        thread.start()
        await waiter
        thread.join()
        kernel = current_kernel()
        assert kernel is not None
        return kernel._reactor is None

    assert pe.run(main)


def test_a_ready_future_does_not_yield() -> None:
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        handle = pe.spawn(other)
        gate = Gate()
        gate.is_open = True
        assert await gate == "opened"
        order.append("main after a ready await")
        await handle

    pe.run(main)
    assert order == ["main after a ready await", "other"]


def test_a_poll_only_future_can_be_spawned_and_joined() -> None:
    class Three:
        def poll(self, cx: pe.Context) -> pe.Poll[int]:
            return pe.Poll.ready(3)

    async def main() -> tuple[int, int]:
        assert isinstance(Three(), pe.Future)
        handle = pe.spawn(Three())
        (joined,) = await pe.join(Three())
        return await handle, joined

    assert pe.run(main) == (3, 3)


def test_a_future_polled_by_a_foreign_waker() -> None:
    """A host that is not our kernel drives a join handle with its own waker."""
    kernel = Kernel()
    gate = Gate()
    handle = kernel.spawn(lambda: gate)
    woken: list[int] = []
    cx = pe.Context(pe.Waker(lambda: woken.append(1)))
    assert handle.poll(cx) is pe.Poll.PENDING
    kernel.run_until_stalled()
    gate.is_open = True
    assert gate.waker is not None
    gate.waker.wake()
    kernel.run_until_stalled()
    assert woken == [1]
    assert handle.poll(cx).value == "opened"
    kernel.close()


def test_awaiting_a_pet_future_outside_a_run_says_where() -> None:
    """In an asyncio task the adapter awaits it (tests/test_adapters_wrap.py);
    outside any run it is a NoRuntimeError naming the fix."""
    import asyncio

    import bridge

    async def in_asyncio() -> bool:
        event = pe.Event()
        asyncio.get_running_loop().call_soon(event.set)
        await event.wait()
        return event.is_set()

    assert asyncio.run(in_asyncio())
    with pytest.raises(bridge.NoRuntimeError, match="outside a pet_executor run"):
        pe.Event().wait().__await__().send(None)
