"""Deadlock detection: waits that can never finish raise DeadlockError naming
the cycle, at once; nothing hangs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import adapters
import bridge
from bridge import DeadlockError
from pet_executor._host import PetExecutor


@pytest.fixture
def offload() -> Iterator[None]:
    bridge.configure(policy="offload")
    try:
        yield
    finally:
        bridge.configure(policy="strict")


def test_submit_result_on_the_pets_own_thread() -> None:
    """(d) pet.submit(...).result() on the pet's thread can never finish."""
    with PetExecutor("asyncio", name="pet-d") as pet:

        async def inner() -> int:
            return 1

        async def outer() -> str:
            future = pet.submit(inner)
            try:
                future.result(30)
            except DeadlockError as exc:
                future.cancel()
                return str(exc)
            return "no error"

        message = pet.call(outer)
    assert "would never finish" in message
    assert "thread 'pet-d'" in message
    assert "inner on pet-d'" in message
    assert message.endswith("runtime-bridge explain BRG004")


def test_offloaded_loop_waiting_on_pet_work_that_needs_the_loop(offload: None) -> None:
    """(a) A loop thread blocked (offload policy) on pet work that awaits work
    routed back to that loop."""

    async def on_the_loop() -> str:
        return "never runs"

    async def main() -> str:
        loop_token = bridge.current_context().token
        assert loop_token is not None

        async def on_the_pet() -> str:
            return await adapters.call(loop_token, on_the_loop)

        try:
            bridge.block_on(on_the_pet)
        except DeadlockError as exc:
            return str(exc)
        return "no error"

    message = asyncio.run(main())
    assert "would never finish" in message
    assert "on_the_loop" in message
    assert "on_the_pet" in message


def test_ring_across_two_pets_and_a_loop(offload: None) -> None:
    """(c) loop -> pet A -> pet B -> back to the loop."""
    with (
        PetExecutor("asyncio", name="ring-a") as pet_a,
        PetExecutor("asyncio", name="ring-b") as pet_b,
    ):

        async def on_the_loop() -> str:
            return "never runs"

        async def main() -> str:
            loop_token = bridge.current_context().token
            assert loop_token is not None

            async def on_b() -> str:
                return await adapters.call(loop_token, on_the_loop)

            async def on_a() -> str:
                return await adapters.call(pet_b, on_b)

            try:
                pet_a.call(on_a)
            except DeadlockError as exc:
                return str(exc)
            return "no error"

        message = asyncio.run(main())
    for part in ("on_a on ring-a", "on_b on ring-b", "on_the_loop"):
        assert part in message


def test_limiter_exhausted_by_workers_waiting_on_their_own_loop() -> None:
    """(b) Every token of a limiter is held by a worker whose block_on routed
    back to a loop task that itself waits for a token."""
    limiter = bridge.CapacityLimiter(2)
    errors: list[str] = []
    both_waiting = threading.Barrier(2)

    async def needs_a_token() -> None:
        await bridge.spawn_blocking(lambda: None, limiter=limiter)

    def worker() -> None:
        both_waiting.wait(10)  # both tokens are held before either routes back
        try:
            bridge.block_on(needs_a_token)
        except DeadlockError as exc:
            errors.append(str(exc))

    async def main() -> None:
        await asyncio.gather(
            bridge.spawn_blocking(worker, limiter=limiter),
            bridge.spawn_blocking(worker, limiter=limiter),
        )

    asyncio.run(main())
    assert errors, "the last wait that closes the knot raises"
    assert "CapacityLimiter(2)" in errors[0]


def test_no_false_alarm_for_ordinary_nesting() -> None:
    """Waits that can finish raise nothing: a worker waiting on its loop, a
    pet calling another pet, a loop awaiting a pet."""
    with PetExecutor("asyncio") as other:

        async def leaf() -> int:
            return 1

        async def via_other() -> int:
            return await adapters.call(other, leaf)

        async def main() -> list[int]:
            return [
                await bridge.spawn_blocking(bridge.block_on, leaf),
                await adapters.call(bridge.pet("asyncio"), via_other),
                await adapters.call("asyncio", leaf),
            ]

        assert asyncio.run(main()) == [1, 1, 1]
    assert bridge._deadlock.graph.snapshot() == []
