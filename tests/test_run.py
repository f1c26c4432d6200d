"""bridge.run with portals, block_on through a portal, and pets re-entering."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sniffio

import bridge
from bridge import Context, NestedRuntimeError
from pet_executor._host import PetExecutor
from tests.runtimes import Driver


def nested(driver: Driver, depth: int) -> Any:
    """async -> sync -> async ... ``depth`` levels deep, all on one thread."""

    async def level() -> tuple[int, int]:
        await driver.sleep(0)
        if depth == 0:
            return threading.get_ident(), threading.active_count()
        return bridge.block_on(nested(driver, depth - 1))

    return level


def test_run_gives_every_task_a_portal_and_nesting_ten_deep_stays_on_one_thread(
    driver: Driver,
) -> None:
    async def main() -> tuple[tuple[int, int], int, int, Context]:
        threads_before = threading.active_count()
        return (
            bridge.block_on(nested(driver, 10)),
            threading.get_ident(),
            threads_before,
            bridge.current_context(),
        )

    (ident, threads_at_bottom), main_ident, threads_before, ctx = bridge.run(
        main, runtime=driver.runtime, **driver.pet_options()
    )
    assert ident == main_ident, "no thread: the same thread all the way down"
    assert threads_at_bottom == threads_before, "no thread was started"
    assert ctx.portal is True
    assert (ctx.runtime, ctx.role) == (driver.runtime, "event_loop")


def test_errors_and_timeouts_cross_every_level(driver: Driver) -> None:
    async def fails() -> None:
        await driver.sleep(0)
        raise KeyError("at the bottom")

    async def middle() -> None:
        bridge.block_on(fails)

    async def main() -> str:
        with pytest.raises(KeyError, match="at the bottom") as info:
            bridge.block_on(middle)
        assert {"fails", "middle"} <= {entry.name for entry in info.traceback}
        with pytest.raises(TimeoutError):
            bridge.block_on(driver.sleep, 10, timeout=0.02)
        return "ok"

    assert bridge.run(main, runtime=driver.runtime, **driver.pet_options()) == "ok"


def test_portal_block_on_of_another_runtime() -> None:
    pytest.importorskip("trio")

    async def trio_side() -> str | None:
        import trio

        await trio.sleep(0)
        return bridge.current_runtime()

    async def main() -> str | None:
        return bridge.block_on(trio_side, runtime="trio")

    assert bridge.run(main) == "trio"


def test_without_portals_block_on_is_refused() -> None:
    async def noop() -> None:
        return None

    async def main() -> None:
        bridge.block_on(noop)

    with pytest.raises(bridge.BlockingInLoopError):
        bridge.run(main, portals=False)


def test_pet_tasks_reenter_their_own_pet(driver: Driver) -> None:
    with PetExecutor(driver.runtime, **driver.pet_options()) as pet:

        async def outer() -> tuple[bool, int]:
            ident, _ = pet.call(nested(driver, 3))
            return bridge.current_context().portal, ident

        portal, ident = pet.call(outer)
        inner_thread = pet.call(nested(driver, 0))[0]
    assert portal is True
    assert ident == inner_thread, "re-entered on the pet's own thread"


def test_ensure_portal_for_a_program_started_elsewhere() -> None:
    import asyncio

    async def noop() -> str:
        return "re-entered"

    async def main() -> tuple[bool, str]:
        await bridge.ensure_portal()
        return bridge.current_context().portal, bridge.block_on(noop)

    assert asyncio.run(main()) == (True, "re-entered")


def test_nested_run_is_refused_naming_both_runtimes(driver: Driver) -> None:
    async def inner() -> None:
        return None

    async def main() -> str:
        with pytest.raises(NestedRuntimeError) as info:
            bridge.run(inner, runtime="asyncio")
        return str(info.value)

    message = driver.run(main)
    assert f"would start asyncio on a thread that is running {driver.runtime}" in message


def test_sniffio_agrees_in_runs_we_own(driver: Driver) -> None:
    """Inside bridge.run and pets sniffio names the runtime, even in a loop
    callback (where asyncio alone leaves sniffio guessing)."""
    callback_check = driver.callback

    async def main() -> tuple[str, str | None]:
        in_task = sniffio.current_async_library()
        in_callback = None
        if callback_check is not None:
            in_callback = await callback_check(sniffio.current_async_library)
        return in_task, in_callback

    in_task, in_callback = bridge.run(main, runtime=driver.runtime, **driver.pet_options())
    assert in_task == driver.runtime
    assert in_callback in (driver.runtime, None)
    if driver.callback is not None:
        assert in_callback == driver.runtime
