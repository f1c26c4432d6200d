"""The asyncio pets' loop: idles on a queue while it has no I/O, in the
selector as soon as it has some, and never misses a wake-up either way."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading

import pytest

from adapters._quiet_loop import QuietEventLoop
from pet_executor import PetExecutor


def _loop_of(pet: PetExecutor) -> asyncio.AbstractEventLoop:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    return pet.call(running_loop)


def test_an_asyncio_pet_runs_a_quiet_loop_unless_given_a_factory() -> None:
    with PetExecutor("asyncio") as pet:
        assert type(_loop_of(pet)) is QuietEventLoop
    with PetExecutor("asyncio", loop_factory=asyncio.SelectorEventLoop) as pet:
        assert type(_loop_of(pet)) is asyncio.SelectorEventLoop


def test_idle_on_the_queue_then_woken_by_another_thread() -> None:
    with PetExecutor("asyncio") as pet:
        loop = _loop_of(pet)
        selector = loop._selector  # type: ignore[attr-defined]
        assert len(selector.get_map()) == 1  # its own wake-up socket alone
        for _ in range(200):
            answer: concurrent.futures.Future[int] = concurrent.futures.Future()
            loop.call_soon_threadsafe(answer.set_result, 7)
            assert answer.result(timeout=10) == 7


def test_a_timer_ends_a_quiet_sleep() -> None:
    async def nap() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(0.02)
        return loop.time() - start

    with PetExecutor("asyncio") as pet:
        assert pet.call(nap) >= 0.02


def test_with_a_socket_registered_it_sleeps_in_the_selector() -> None:
    a, b = socket.socketpair()
    got: concurrent.futures.Future[bytes] = concurrent.futures.Future()
    with PetExecutor("asyncio") as pet, a, b:
        loop = _loop_of(pet)
        b.setblocking(False)

        async def watch() -> int:
            asyncio.get_running_loop().add_reader(b, lambda: got.set_result(b.recv(10)))
            return len(loop._selector.get_map())  # type: ignore[attr-defined]

        assert pet.call(watch) == 2
        # Wake-ups from other threads still arrive while it waits on the socket...
        for _ in range(50):
            answer: concurrent.futures.Future[None] = concurrent.futures.Future()
            loop.call_soon_threadsafe(answer.set_result, None)
            answer.result(timeout=10)
        # ...and so does the socket's readiness.
        a.send(b"ping")
        assert got.result(timeout=10) == b"ping"

        async def unwatch() -> int:
            asyncio.get_running_loop().remove_reader(b)
            return len(loop._selector.get_map())  # type: ignore[attr-defined]

        assert pet.call(unwatch) == 1
        assert pet.call(asyncio.sleep, 0, "quiet again") == "quiet again"


@pytest.mark.parametrize("threads", [16])
def test_no_wake_up_is_lost_under_many_wakers(threads: int) -> None:
    calls = 300
    with PetExecutor("asyncio") as pet:
        loop = _loop_of(pet)
        done = [0]
        start = threading.Barrier(threads)

        def bump() -> None:
            done[0] += 1

        def waker() -> None:
            start.wait()
            for _ in range(calls):
                answer: concurrent.futures.Future[None] = concurrent.futures.Future()
                loop.call_soon_threadsafe(bump)
                loop.call_soon_threadsafe(answer.set_result, None)
                answer.result(timeout=10)

        workers = [threading.Thread(target=waker) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        async def count() -> int:
            return done[0]

        assert pet.call(count) == threads * calls
