"""adapters.iterate and adapters.enter for every host x guest pair: each runs
in one dedicated guest task; async generators are finalised by the guest."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import adapters
from bridge import GuestCancelledError
from tests.adapter_helpers import (
    Pets,
    cancel_when,
    current_task_object,
    host_cancel_type,
    pets,
    sniffio_name,
)
from tests.runtimes import DRIVERS, Driver


@pytest.fixture(scope="module")
def guest_pets() -> Iterator[Pets]:
    with pets() as made:
        yield made


class Log:
    """What the guest's generator or context manager saw, where."""

    def __init__(self) -> None:
        self.tasks: list[object] = []  # kept alive: ids of live objects differ
        self.entries: list[str] = []
        self.finalised = threading.Event()
        self.final_where: tuple[str, str] | None = None

    async def note(self, runtime: str, what: str) -> None:
        self.tasks.append(await current_task_object(runtime))
        self.entries.append(what)

    def finalise(self) -> None:
        self.final_where = (sniffio_name(), threading.current_thread().name)
        self.finalised.set()


def numbers(guest: Driver, log: Log, n: int) -> Any:
    async def gen() -> AsyncIterator[int]:
        try:
            for i in range(n):
                await guest.sleep(0)
                await log.note(guest.runtime, f"yield {i}")
                yield i
        finally:
            log.finalise()

    return gen()


def test_iterate_runs_every_step_in_one_guest_task(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    pet = guest_pets(guest)
    log = Log()

    async def main() -> list[int]:
        return [item async for item in adapters.iterate(pet, numbers(guest, log, 3))]

    assert host.run(main) == [0, 1, 2]
    assert len({id(task) for task in log.tasks}) == 1, "one dedicated guest task"
    assert log.final_where == (guest.runtime, pet.name), "finalised in the guest"


def test_leaving_early_finalises_the_generator_in_the_guest(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """Breaking out of ``async with adapters.iterate(...)`` closes the guest
    generator (its aclose(), in its guest task) before the host goes on."""
    pet = guest_pets(guest)
    log = Log()

    async def main() -> tuple[list[int], bool]:
        got = []
        async with adapters.iterate(pet, numbers(guest, log, 100)) as items:
            async for item in items:
                got.append(item)
                if item == 1:
                    break
        return got, log.finalised.is_set()

    got, finalised = host.run(main)
    assert got == [0, 1]
    assert finalised, "aclose ran in the guest before the host went on"
    assert log.final_where == (guest.runtime, pet.name)


def test_an_abandoned_iterator_is_finalised_in_the_guest(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    pet = guest_pets(guest)
    log = Log()

    async def main() -> None:
        items = adapters.iterate(pet, numbers(guest, log, 100))
        assert await items.__anext__() == 0
        del items  # collected: the guest closes its generator, in its task

    host.run(main)
    assert log.finalised.wait(10)
    assert log.final_where == (guest.runtime, pet.name)


def test_cancelling_the_host_mid_step_finalises_the_guest_first(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """The host cancelled while the guest generator waits: the guest task is
    cancelled, the generator's finally runs (by the guest's rules) before the
    host's waiter finishes, and the host sees its own cancellation."""
    pet = guest_pets(guest)
    log = Log()
    started = threading.Event()
    seen: list[tuple[type[BaseException], bool]] = []

    async def stuck() -> AsyncIterator[int]:
        try:
            yield 0
            started.set()
            await guest.sleep(60)
            yield 1
        finally:
            log.finalise()

    async def body() -> None:
        items = adapters.iterate(pet, stuck())
        try:
            async for _ in items:
                pass
        except BaseException as error:
            seen.append((type(error), log.finalised.is_set()))
            raise

    async def main() -> None:
        await cancel_when(host.runtime, started, body)

    host.run(main)
    [(kind, finalised)] = seen
    assert issubclass(kind, host_cancel_type(host.runtime)), kind
    assert finalised
    assert log.final_where == (guest.runtime, pet.name)


def test_iterator_errors_cross_with_a_note(host: Driver, guest: Driver, guest_pets: Pets) -> None:
    pet = guest_pets(guest)

    async def fails() -> AsyncIterator[int]:
        yield 1
        raise KeyError("in the generator")

    async def main() -> tuple[list[int], BaseException]:
        got: list[int] = []
        try:
            async for item in adapters.iterate(pet, fails()):
                got.append(item)
        except KeyError as error:
            return got, error
        raise AssertionError("no error")

    got, error = host.run(main)
    assert got == [1]
    assert "in the generator" in str(error)
    assert any(f"raised in {guest.runtime} task" in n for n in error.__notes__)


def test_enter_runs_enter_and_exit_in_one_guest_task(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """__aenter__ and __aexit__ run in one guest task; the body's exception
    reaches __aexit__, which may suppress it."""
    pet = guest_pets(guest)
    log = Log()

    @asynccontextmanager
    async def resource(suppress: bool) -> AsyncIterator[str]:
        await log.note(guest.runtime, "enter")
        try:
            yield f"resource on {sniffio_name()}"
        except ValueError:
            await log.note(guest.runtime, "saw ValueError")
            if not suppress:
                raise
        finally:
            await log.note(guest.runtime, "exit")

    async def main() -> tuple[str, bool]:
        async with adapters.enter(pet, resource(suppress=True)) as value:
            raise ValueError("suppressed")
        try:
            async with adapters.enter(pet, resource(suppress=False)):
                raise ValueError("passes")
        except ValueError:
            passed = True
        else:
            passed = False
        return value, passed

    value, passed = host.run(main)
    assert value == f"resource on {guest.runtime}"
    assert passed
    assert log.entries == ["enter", "saw ValueError", "exit"] * 2
    first, second = log.tasks[:3], log.tasks[3:]
    assert len({id(task) for task in first}) == 1, "enter and exit in the same task"
    assert len({id(task) for task in second}) == 1


def test_a_guest_side_cancel_of_a_step_is_guest_cancelled_error() -> None:
    """asyncio host, asyncio guest pet: the guest generator cancels its own
    task; the host gets GuestCancelledError, not its own CancelledError."""
    import asyncio

    from pet_executor._host import PetExecutor

    async def cancels_itself() -> AsyncIterator[int]:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(10)
        yield 1

    async def main() -> BaseException:
        with PetExecutor("asyncio") as pet:
            try:
                async for _ in adapters.iterate(pet, cancels_itself()):
                    pass
            except BaseException as error:
                return error
        raise AssertionError("no error")

    error = DRIVERS[0].run(main)
    assert isinstance(error, GuestCancelledError), repr(error)


def test_iterate_refuses_what_is_not_async_iterable() -> None:
    async def main() -> None:
        adapters.iterate("trio", [1, 2])  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="expected an async iterable, got list"):
        DRIVERS[0].run(main)
