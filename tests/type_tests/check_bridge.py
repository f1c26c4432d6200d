"""Types seen by mypy (checked by ``make typecheck``, never run)."""

from __future__ import annotations

import concurrent.futures

from typing_extensions import assert_type

import bridge
from pet_executor._host import PetExecutor


async def number(x: int) -> int:
    return x


async def text() -> str:
    return "a"


def sync_caller() -> None:
    assert_type(bridge.block_on(number, 1), int)
    assert_type(bridge.block_on(number(1)), int)
    assert_type(bridge.block_on(text, runtime="trio", timeout=1.0), str)
    pet = PetExecutor("asyncio")
    assert_type(pet.call(number, 2), int)
    future = pet.submit(text)
    assert isinstance(future, concurrent.futures.Future)
    assert_type(future.result(), str)
    ctx = bridge.current_context()
    assert_type(ctx.runtime, str | None)
    assert_type(ctx.can_block, bool)


async def async_caller() -> None:
    assert_type(await bridge.spawn_blocking(len, "abc"), int)
