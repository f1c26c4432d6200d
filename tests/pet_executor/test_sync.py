"""Event, Lock, Semaphore and Channel: waiting through wakers, fairness,
cancel safety, and use from other threads and from a foreign waker."""

from __future__ import annotations

import threading

import pytest

import pet_executor as pe

from ._helpers import in_thread


def _noop_context() -> tuple[pe.Context, list[int]]:
    woken: list[int] = []
    return pe.Context(pe.Waker(lambda: woken.append(1))), woken


# -- Event ----------------------------------------------------------------------


def test_event_wakes_every_waiter() -> None:
    async def main() -> list[int]:
        event = pe.Event()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await event.wait()
            order.append(i)

        handles = [pe.spawn(waiter, i) for i in range(3)]
        await pe.sleep(0)
        assert order == []
        event.set()
        event.set()  # idempotent
        for handle in handles:
            await handle
        assert event.is_set()
        await event.wait()  # set: ready at once
        return order

    assert pe.run(main) == [0, 1, 2]


def test_event_set_from_another_thread() -> None:
    async def main() -> bool:
        event = pe.Event()
        started = threading.Event()
        waiter = pe.spawn(event.wait)

        def setter() -> None:
            started.wait()
            event.set()

        thread = threading.Thread(target=setter)
        thread.start()
        await pe.sleep(0)  # the waiter parks
        started.set()
        await waiter
        thread.join()
        return event.is_set()

    assert pe.run(main)


def test_event_driven_by_a_foreign_waker() -> None:
    event = pe.Event()
    wait = event.wait()
    cx, woken = _noop_context()
    assert wait.poll(cx) is pe.Poll.PENDING
    in_thread(event.set)
    assert woken == [1]
    assert wait.poll(cx).is_ready


def test_cancelled_event_wait_deregisters_its_waker() -> None:
    event = pe.Event()
    wait = event.wait()
    cx, woken = _noop_context()
    wait.poll(cx)
    wait.drop()
    event.set()
    assert woken == []


# -- Lock and Semaphore -----------------------------------------------------------


def test_lock_excludes_and_serves_in_arrival_order() -> None:
    async def main() -> list[str]:
        lock = pe.Lock()
        log: list[str] = []

        async def worker(name: str) -> None:
            async with lock:
                log.append(f"{name} in")
                await pe.sleep(0)
                await pe.sleep(0)
                log.append(f"{name} out")

        await pe.join(worker("a"), worker("b"), worker("c"))
        assert not lock.locked()
        return log

    assert pe.run(main) == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_lock_release_when_unlocked_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not locked"):
        pe.Lock().release()


def test_a_cancelled_lock_waiter_passes_the_lock_on() -> None:
    """The lock was handed to a waiter that is cancelled before it saw it:
    the next waiter gets it; the lock is not lost."""

    async def main() -> list[str]:
        lock = pe.Lock()
        log: list[str] = []
        await lock.acquire()

        async def waiter(name: str) -> None:
            async with lock:
                log.append(name)

        first = pe.spawn(waiter, "first")
        second = pe.spawn(waiter, "second")
        await pe.sleep(0)  # both queue
        lock.release()  # handed to "first"...
        first.abort()  # ...which is cancelled before it runs again
        with pytest.raises(pe.Cancelled):
            await first
        await second
        assert not lock.locked()
        return log

    assert pe.run(main) == ["second"]


def test_semaphore_bounds_concurrency() -> None:
    async def main() -> int:
        sem = pe.Semaphore(2)
        inside = 0
        peak = 0

        async def worker() -> None:
            nonlocal inside, peak
            async with sem:
                inside += 1
                peak = max(peak, inside)
                await pe.sleep(0)
                inside -= 1

        await pe.join(*[worker() for _ in range(6)])
        assert sem.value == 2
        return peak

    assert pe.run(main) == 2


def test_semaphore_try_acquire_and_release_from_a_thread() -> None:
    sem = pe.Semaphore(1)
    assert sem.try_acquire()
    assert not sem.try_acquire()
    in_thread(sem.release)
    assert sem.value == 1
    with pytest.raises(ValueError, match=">= 0"):
        pe.Semaphore(-1)


def test_lock_acquired_by_a_foreign_waker_while_a_task_holds_it() -> None:
    lock = pe.Lock()
    assert lock.try_acquire()
    acquire = lock.acquire()
    cx, woken = _noop_context()
    assert acquire.poll(cx) is pe.Poll.PENDING
    in_thread(lock.release)
    assert woken == [1]
    assert acquire.poll(cx).is_ready
    assert lock.locked()


# -- Channel ------------------------------------------------------------------------


def test_channel_delivers_in_order_and_iteration_ends_at_close() -> None:
    async def main() -> list[int]:
        channel: pe.Channel[int] = pe.Channel(2)

        async def producer() -> None:
            for i in range(10):
                await channel.send(i)
            channel.close()

        handle = pe.spawn(producer)
        received = [item async for item in channel]
        await handle
        return received

    assert pe.run(main) == list(range(10))


def test_channel_is_bounded() -> None:
    async def main() -> list[int]:
        channel: pe.Channel[int] = pe.Channel(3)
        sizes: list[int] = []

        async def producer() -> None:
            for i in range(6):
                await channel.send(i)
                sizes.append(len(channel))

        handle = pe.spawn(producer)
        for _ in range(4):
            await pe.sleep(0)
        assert len(channel) == 3, "the sender waits for room"
        for _ in range(6):
            await channel.receive()
        await handle
        return sizes

    sizes = pe.run(main)
    assert max(sizes) <= 3


def test_channel_close_fails_senders_and_drains_to_receivers() -> None:
    async def main() -> None:
        channel: pe.Channel[str] = pe.Channel(1)
        await channel.send("kept")
        blocked = pe.spawn(channel.send, "blocked")
        await pe.sleep(0)
        channel.close()
        with pytest.raises(pe.ChannelClosed):
            await blocked
        with pytest.raises(pe.ChannelClosed):
            await channel.send("late")
        assert await channel.receive() == "kept"
        with pytest.raises(pe.ChannelClosed):
            await channel.receive()
        assert channel.closed

    pe.run(main)


def test_a_cancelled_receive_loses_no_item() -> None:
    async def main() -> list[str]:
        channel: pe.Channel[str] = pe.Channel(4)
        first = pe.spawn(channel.receive)
        second = pe.spawn(channel.receive)
        await pe.sleep(0)  # both queue
        await channel.send("only item")  # reserved for "first"...
        first.abort()  # ...which is cancelled before it took it
        with pytest.raises(pe.Cancelled):
            await first
        return [await second]

    assert pe.run(main) == ["only item"]


def test_a_cancelled_send_was_not_sent() -> None:
    async def main() -> list[str]:
        channel: pe.Channel[str] = pe.Channel(1)
        await channel.send("a")
        blocked = pe.spawn(channel.send, "cancelled")
        waiting = pe.spawn(channel.send, "b")
        await pe.sleep(0)
        assert await channel.receive() == "a"  # room: reserved for "cancelled"...
        blocked.abort()  # ...which is cancelled: the room passes to "b"
        with pytest.raises(pe.Cancelled):
            await blocked
        await waiting
        channel.close()
        return [item async for item in channel]

    assert pe.run(main) == ["b"]


def test_channel_ping_pong_between_two_tasks() -> None:
    async def main() -> int:
        there: pe.Channel[int] = pe.Channel(1)
        back: pe.Channel[int] = pe.Channel(1)

        async def echo() -> None:
            async for item in there:
                await back.send(item + 1)
            back.close()

        handle = pe.spawn(echo)
        total = 0
        for i in range(1000):
            await there.send(i)
            total += await back.receive() - i
        there.close()
        await handle
        return total

    assert pe.run(main) == 1000


def test_channel_between_a_thread_and_a_task() -> None:
    """A plain thread drives a send with its own waker; the task receives."""
    channel: pe.Channel[int] = pe.Channel(1)

    def producer() -> None:
        for i in range(50):
            done = threading.Event()
            send = channel.send(i)
            cx = pe.Context(pe.Waker(done.set))
            while send.poll(cx) is pe.Poll.PENDING:
                done.wait()
                done.clear()
        channel.close()

    async def main() -> list[int]:
        thread = threading.Thread(target=producer)
        thread.start()
        try:
            return [item async for item in channel]
        finally:
            thread.join()

    assert pe.run(main) == list(range(50))


def test_channel_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        pe.Channel(0)
