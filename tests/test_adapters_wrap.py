"""adapters.wrap from every host; pet_executor futures awaited directly by
asyncio, trio and curio tasks; a five-deep chain; 10,000 awaits in flight."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import adapters
import bridge
import pet_executor
from bridge import GuestCancelledError
from bridge._registry import unavailable_reason
from pet_executor._host import PetExecutor
from tests.adapter_helpers import (
    WAIT_S,
    cancel_when,
    host_cancel_type,
    notes_of,
    wait_for,
)
from tests.runtimes import DRIVERS, Driver, driver_params

FOREIGN_HOSTS = driver_params(lambda d: d.runtime != "pet_executor")


@pytest.fixture(scope="module")
def asyncio_pet() -> Iterator[PetExecutor]:
    import asyncio

    with PetExecutor("asyncio", name="wrap-asyncio") as pet:
        pet.call(asyncio.sleep, 0)  # started here: the module's, not a test's
        yield pet


@pytest.fixture(scope="module")
def pet_pet() -> Iterator[PetExecutor]:
    import pet_executor

    with PetExecutor("pet_executor", name="wrap-pet_executor") as pet:
        pet.call(pet_executor.sleep, 0)  # started here: the module's, not a test's
        yield pet


# -- concurrent.futures.Future ---------------------------------------------------------


def test_wrap_a_concurrent_future(driver: Driver) -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    timer = threading.Timer(0.01, future.set_result, args=(7,))

    async def main() -> int:
        timer.start()
        return await adapters.wrap(future)  # type: ignore[no-any-return]

    assert driver.run(main) == 7


def test_cancelling_the_host_cancels_a_wrapped_concurrent_future(driver: Driver) -> None:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    started = threading.Event()
    seen: list[type[BaseException]] = []

    async def body() -> None:
        started.set()
        try:
            await adapters.wrap(future)
        except BaseException as error:
            seen.append(type(error))
            raise

    async def main() -> None:
        await cancel_when(driver.runtime, started, body)

    driver.run(main)
    assert future.cancelled()
    assert issubclass(seen[0], host_cancel_type(driver.runtime))


# -- an asyncio future of another loop ---------------------------------------------------


def test_wrap_an_asyncio_task_of_another_loop(driver: Driver, asyncio_pet: PetExecutor) -> None:
    import asyncio

    async def start() -> asyncio.Task[str]:
        async def work() -> str:
            await asyncio.sleep(0.01)
            return "from the other loop"

        return asyncio.ensure_future(work())

    task = asyncio_pet.call(start)

    async def main() -> str:
        return await adapters.wrap(task)  # type: ignore[no-any-return]

    assert driver.run(main) == "from the other loop"


def test_cancelling_the_host_cancels_a_wrapped_asyncio_task_after_its_cleanup(
    driver: Driver, asyncio_pet: PetExecutor
) -> None:
    import asyncio

    started, cleaned = threading.Event(), threading.Event()
    seen: list[tuple[type[BaseException], bool]] = []

    async def start() -> asyncio.Task[None]:
        async def work() -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            finally:
                cleaned.set()

        return asyncio.ensure_future(work())

    task = asyncio_pet.call(start)

    async def body() -> None:
        try:
            await adapters.wrap(task)
        except BaseException as error:
            seen.append((type(error), cleaned.is_set()))
            raise

    driver.run(lambda: cancel_when(driver.runtime, started, body))
    [(kind, cleaned_first)] = seen
    assert issubclass(kind, host_cancel_type(driver.runtime))
    assert cleaned_first
    assert task.cancelled()


def test_an_asyncio_task_cancelled_on_its_own_loop_is_guest_cancelled(
    driver: Driver, asyncio_pet: PetExecutor
) -> None:
    import asyncio

    async def start() -> asyncio.Task[None]:
        task = asyncio.ensure_future(asyncio.sleep(60))
        asyncio.get_running_loop().call_later(0.01, task.cancel)
        return task

    task = asyncio_pet.call(start)

    async def main() -> BaseException:
        try:
            await adapters.wrap(task)
        except BaseException as error:
            return error
        raise AssertionError("no error")

    error = driver.run(main)
    assert isinstance(error, GuestCancelledError), repr(error)


# -- a curio task --------------------------------------------------------------------------

CURIO_MISSING = unavailable_reason("curio")


@pytest.mark.skipif(CURIO_MISSING is not None, reason=str(CURIO_MISSING and CURIO_MISSING.what))
def test_wrap_a_curio_task_of_a_pet(driver: Driver) -> None:
    import curio

    started, cleaned = threading.Event(), threading.Event()
    seen: list[tuple[type[BaseException], bool]] = []

    async def quick() -> str:
        await curio.sleep(0)
        return "from curio"

    async def long() -> None:
        started.set()
        try:
            await curio.sleep(60)
        finally:
            cleaned.set()

    async def spawn(fn: Any) -> Any:
        return await curio.spawn(fn)

    with PetExecutor("curio", name="wrap-curio") as pet:
        done_task = pet.call(spawn, quick)
        long_task = pet.call(spawn, long)

        async def body() -> None:
            try:
                await adapters.wrap(long_task)
            except BaseException as error:
                seen.append((type(error), cleaned.is_set()))
                raise

        async def main() -> str:
            value = await adapters.wrap(done_task)
            await cancel_when(driver.runtime, started, body)
            return value  # type: ignore[no-any-return]

        assert driver.run(main) == "from curio"
    [(kind, cleaned_first)] = seen
    assert issubclass(kind, host_cancel_type(driver.runtime))
    assert cleaned_first


# -- a pet_executor JoinHandle ---------------------------------------------------------------


def test_wrap_a_join_handle_and_cancel_it(driver: Driver, pet_pet: PetExecutor) -> None:
    started, cleaned = threading.Event(), threading.Event()
    seen: list[tuple[type[BaseException], bool]] = []

    async def quick() -> str:
        await pet_executor.sleep(0)
        return "from pet_executor"

    async def long() -> None:
        started.set()
        try:
            await pet_executor.sleep(60)
        finally:
            cleaned.set()

    async def spawn(fn: Any) -> pet_executor.JoinHandle[Any]:
        return pet_executor.spawn(fn)

    quick_handle = pet_pet.call(spawn, quick)
    long_handle = pet_pet.call(spawn, long)

    async def body() -> None:
        try:
            await adapters.wrap(long_handle)
        except BaseException as error:
            seen.append((type(error), cleaned.is_set()))
            raise

    async def main() -> str:
        value = await adapters.wrap(quick_handle)
        await cancel_when(driver.runtime, started, body)
        return value  # type: ignore[no-any-return]

    assert driver.run(main) == "from pet_executor"
    [(kind, cleaned_first)] = seen
    assert issubclass(kind, host_cancel_type(driver.runtime))
    assert cleaned_first, "the task's finally ran before the host's waiter finished"


def test_wrap_refuses_a_coroutine_with_the_fix() -> None:
    async def coro() -> None:
        return None

    async def main() -> None:
        c = coro()
        try:
            await adapters.wrap(c)
        finally:
            c.close()

    with pytest.raises(TypeError, match=r"adapters.wrap\(\) takes a concurrent.futures.Future"):
        DRIVERS[0].run(main)


# -- pet_executor futures awaited directly by a foreign host ----------------------------------


@pytest.mark.parametrize("driver", FOREIGN_HOSTS)
def test_pet_event_set_from_another_thread_wakes_a_foreign_task(driver: Driver) -> None:
    event = pet_executor.Event()

    async def main() -> bool:
        threading.Timer(0.01, event.set).start()
        await event.wait()
        return event.is_set()

    assert driver.run(main)


@pytest.mark.parametrize("driver", FOREIGN_HOSTS)
def test_pet_event_set_on_the_same_thread_wakes_a_foreign_task(driver: Driver) -> None:
    """The same-thread fast path: a sibling task of the host sets it."""
    event = pet_executor.Event()
    order: list[str] = []

    async def waiter() -> str:
        order.append("waiting")
        await event.wait()
        order.append("woken")
        return "woken"

    async def setter() -> None:
        while not order:
            await driver.sleep(0)
        order.append("set")
        event.set()

    async def main() -> Any:
        from tests.test_adapters import _gather2

        return await _gather2(driver.runtime, waiter, setter)

    assert driver.run(main) == "woken"
    assert order == ["waiting", "set", "woken"]


@pytest.mark.parametrize("driver", FOREIGN_HOSTS)
def test_pet_channel_and_lock_work_in_a_foreign_task(driver: Driver) -> None:
    channel: pet_executor.Channel[int] = pet_executor.Channel(1)
    lock = pet_executor.Lock()

    def producer() -> None:
        async def send_all() -> None:
            for i in range(5):
                await channel.send(i)
            channel.close()

        pet_executor.run(send_all)

    async def main() -> tuple[list[int], bool]:
        thread = threading.Thread(target=producer)
        thread.start()
        got = [item async for item in channel]
        await bridge.spawn_blocking(thread.join)
        async with lock:
            held = lock.locked()
        return got, held and not lock.locked()

    assert driver.run(main) == ([0, 1, 2, 3, 4], True)


@pytest.mark.parametrize("driver", FOREIGN_HOSTS)
def test_cancelling_a_foreign_task_drops_the_pet_future(driver: Driver) -> None:
    """Cancelling is dropping: the waiter leaves the event, the host sees its
    own cancellation."""
    event = pet_executor.Event()
    started = threading.Event()
    seen: list[type[BaseException]] = []

    async def body() -> None:
        started.set()
        try:
            await event.wait()
        except BaseException as error:
            seen.append(type(error))
            raise

    driver.run(lambda: cancel_when(driver.runtime, started, body))
    assert issubclass(seen[0], host_cancel_type(driver.runtime))
    assert not event._waiters, "the dropped wait deregistered its waker"


@pytest.mark.parametrize("driver", FOREIGN_HOSTS)
def test_a_join_handle_is_awaitable_directly(driver: Driver, pet_pet: PetExecutor) -> None:
    async def work() -> int:
        await pet_executor.sleep(0.01)
        return 5

    async def spawn() -> pet_executor.JoinHandle[int]:
        return pet_executor.spawn(work)

    handle = pet_pet.call(spawn)

    async def main() -> int:
        return await handle

    assert driver.run(main) == 5


def test_a_pet_future_outside_any_task_names_the_fix() -> None:
    wait = pet_executor.Event().wait()
    with pytest.raises(bridge.NoRuntimeError, match="outside a pet_executor run"):
        wait.__await__().send(None)


# -- five deep -----------------------------------------------------------------------------


@pytest.mark.skipif(CURIO_MISSING is not None, reason=str(CURIO_MISSING and CURIO_MISSING.what))
def test_a_five_deep_chain_returns_raises_and_cancels() -> None:
    """asyncio -> trio -> curio -> pet_executor -> asyncio, each hop through
    adapters.call: the value comes back, an exception gains one note per hop,
    and cancelling the outermost task runs every level's finally first."""
    import asyncio

    import curio
    import trio

    started, cleaned = threading.Event(), []
    with (
        PetExecutor("trio", name="chain-trio") as p_trio,
        PetExecutor("curio", name="chain-curio") as p_curio,
        PetExecutor("pet_executor", name="chain-pet") as p_pet,
        PetExecutor("asyncio", name="chain-asyncio") as p_asyncio,
    ):

        async def level5(mode: str) -> str:
            if mode == "raise":
                raise KeyError("deep down")
            if mode == "cancel":
                started.set()
                try:
                    await asyncio.sleep(60)
                finally:
                    cleaned.append("asyncio")
            return "bottom"

        async def level4(mode: str) -> str:
            try:
                return await adapters.call(p_asyncio, level5, mode)
            finally:
                cleaned.append("pet_executor")

        async def level3(mode: str) -> str:
            try:
                return await adapters.call(p_pet, level4, mode)
            finally:
                cleaned.append("curio")

        async def level2(mode: str) -> str:
            try:
                return await adapters.call(p_curio, level3, mode)
            finally:
                cleaned.append("trio")

        async def level1(mode: str) -> str:
            return await adapters.call(p_trio, level2, mode)

        async def main() -> tuple[str, BaseException, list[str]]:
            value = await level1("return")
            try:
                await level1("raise")
            except KeyError as error:
                raised = error
            cleaned.clear()
            task = asyncio.ensure_future(level1("cancel"))
            await wait_for(started)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return value, raised, list(cleaned)

        value, raised, order = asyncio.run(main())
    assert value == "bottom"
    notes = notes_of(raised)
    assert len(notes) == 4, notes
    assert [n.split(" task ")[0] for n in notes] == [
        "raised in asyncio",
        "raised in pet_executor",
        "raised in curio",
        "raised in trio",
    ]
    assert order == ["asyncio", "pet_executor", "curio", "trio"], "innermost cleanup first"
    del curio, trio


# -- many in flight ----------------------------------------------------------------------------


def test_ten_thousand_concurrent_cross_runtime_awaits_all_complete() -> None:
    """10,000 calls from one asyncio task group to the trio pet, all in flight
    at once (each waits for a pet_executor Event that is set only when every
    one has started), all complete."""
    pytest.importorskip("trio")
    import asyncio

    n = 10_000
    all_in = pet_executor.Event()
    release = pet_executor.Event()
    count = [0]
    lock = threading.Lock()

    async def guest(i: int) -> int:
        with lock:
            count[0] += 1
            if count[0] == n:
                all_in.set()
        await release.wait()  # a pet_executor future, awaited by a trio task
        return i

    async def main() -> list[Any]:
        async def releaser() -> None:
            await all_in.wait()  # ... and by an asyncio task
            release.set()

        with PetExecutor("trio", name="ten-thousand") as pet:
            results = await asyncio.wait_for(
                asyncio.gather(releaser(), *(adapters.call(pet, guest, i) for i in range(n))),
                WAIT_S * 6,
            )
        return results[1:]

    assert asyncio.run(main()) == list(range(n))
