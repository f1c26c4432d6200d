"""adapters.call for every ordered host x guest pair: results, exceptions with
one note per hop, cancellation both ways, contextvars and sniffio."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import adapters
import bridge
from bridge import GuestCancelledError, RunFinishedError, RuntimeUnavailableError
from pet_executor._host import PetExecutor
from tests.adapter_helpers import (
    PY312,
    Pets,
    cancel_myself,
    cancel_when,
    host_cancel_type,
    notes_of,
    pets,
    sniffio_name,
    wait_for,
)
from tests.runtimes import DRIVERS, Driver

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@pytest.fixture(scope="module")
def guest_pets() -> Iterator[Pets]:
    with pets() as made:
        yield made


# -- results and exceptions ---------------------------------------------------------


def test_result_crosses_and_the_guest_runs_on_its_pet(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """The value comes back; inside, the guest's runtime runs on the pet's
    thread, sniffio names the guest, and the host's contextvars are visible."""
    pet = guest_pets(guest)

    async def inside(x: int) -> tuple[int, str | None, str, str, str]:
        await guest.sleep(0)
        return (
            x + 1,
            bridge.current_runtime(),
            sniffio_name(),
            threading.current_thread().name,
            VAR.get(),
        )

    async def main() -> Any:
        VAR.set("from the host")
        return await adapters.call(pet, inside, 41)

    value, runtime, sniffed, thread, var = host.run(main)
    assert value == 42
    assert runtime == guest.runtime == sniffed
    assert thread == pet.name
    assert var == "from the host"


class Boom(Exception):
    pass


def test_exception_crosses_with_one_note_per_hop(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """Type, message and the guest's frames are kept; one note names the hop,
    and the same object crossing the same hop again gains no second note."""
    pet = guest_pets(guest)
    same = Boom("the same object twice")

    async def fails() -> None:
        await guest.sleep(0)
        raise Boom("boom in the guest")

    async def fails_with_same() -> None:
        raise same

    async def main() -> tuple[BaseException, list[str]]:
        try:
            await adapters.call(pet, fails)
        except Boom as error:
            caught = error
        for _ in range(2):
            try:
                await adapters.call(pet, fails_with_same)
            except Boom as error:
                again = error
        assert again is same
        return caught, notes_of(same)

    error, same_notes = host.run(main)
    assert str(error) == "boom in the guest"
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "fails" in frames, "the guest's frame is in the traceback"
    [note] = notes_of(error)
    assert f"raised in {guest.runtime} task 'fails'" in note
    assert f"on thread {pet.name}" in note
    assert f"awaited from {host.runtime} task" in note
    assert len(same_notes) == 1, same_notes


# -- cancellation ---------------------------------------------------------------------


def test_host_cancellation_cancels_the_guest_after_its_cleanup(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """Cancelling the host task cancels the guest; the guest's finally has run
    before the host's waiter finishes; the host sees its own cancellation."""
    pet = guest_pets(guest)
    started, cleaned = threading.Event(), threading.Event()
    seen: list[tuple[type[BaseException], bool]] = []

    async def long() -> None:
        started.set()
        try:
            await guest.sleep(60)
        finally:
            cleaned.set()

    async def waiter() -> None:
        try:
            await adapters.call(pet, long)
        except BaseException as error:
            seen.append((type(error), cleaned.is_set()))
            raise

    async def main() -> None:
        await cancel_when(host.runtime, started, waiter)

    host.run(main)
    [(kind, cleaned_first)] = seen
    assert issubclass(kind, host_cancel_type(host.runtime)), kind
    assert cleaned_first, "the guest's finally ran before the host's waiter finished"


def test_host_timeout_cancels_the_guest_and_raises_the_host_timeout(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """A timeout of the host expiring while the guest runs: the guest's cleanup
    runs first, then the host's timeout error."""
    pet = guest_pets(guest)
    started, cleaned = threading.Event(), threading.Event()

    async def long() -> None:
        started.set()
        try:
            await guest.sleep(60)
        finally:
            cleaned.set()

    async def main() -> None:
        await adapters.call(pet, _noop)  # the pet is up: the timeout measures the work
        with pytest.raises(TimeoutError):
            await adapters.get(host.runtime).timeout(0.1, adapters.call(pet, long))
        # Work that started had its cleanup run before the timeout was raised.
        assert cleaned.is_set() == started.is_set()

    host.run(main)


async def _noop() -> None:
    return None


def test_guest_side_cancellation_is_guest_cancelled_error(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    """Work cancelled on the guest's side reaches the host as
    GuestCancelledError, never as the host's own cancellation: a sibling task
    of the host keeps running and its result is kept."""
    pet = guest_pets(guest)

    async def cancelled_in_guest() -> None:
        await cancel_myself(guest.runtime)

    async def caller() -> BaseException:
        try:
            await adapters.call(pet, cancelled_in_guest)
        except BaseException as error:
            return error
        raise AssertionError("the call returned")

    async def main() -> tuple[BaseException, str]:
        return await _with_sibling(host.runtime, caller)

    error, sibling = host.run(main)
    assert isinstance(error, GuestCancelledError), repr(error)
    assert "was cancelled inside" in str(error)
    assert "BRG104" in str(error)
    assert notes_of(error), "the hop is noted"
    assert sibling == "sibling finished"


async def _with_sibling(runtime: str, body: Any) -> tuple[Any, str]:
    """Run ``body()`` next to a sibling task in the host's own task group (a
    trio nursery, an asyncio TaskGroup or gather, a curio TaskGroup, spawned
    pet_executor tasks); the sibling finishes after the body did."""
    done = threading.Event()
    out: list[Any] = []

    async def run_body() -> None:
        try:
            out.append(await body())
        finally:
            done.set()

    async def sibling() -> str:
        await wait_for(done)
        return "sibling finished"

    if runtime == "trio":
        import trio

        results: list[str] = []

        async def keep(fn: Any) -> None:
            results.append(await fn())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep, sibling)
            nursery.start_soon(run_body)
        return out[0], results[0]
    if runtime == "asyncio":
        import asyncio

        task_group = getattr(asyncio, "TaskGroup", None)
        if task_group is not None:
            async with task_group() as group:
                sib = group.create_task(sibling())
                group.create_task(run_body())
            return out[0], sib.result()
        sib_result, _ = await asyncio.gather(sibling(), run_body())
        return out[0], sib_result
    if runtime == "curio":
        import curio

        async with curio.TaskGroup() as group:
            sib = await group.spawn(sibling)
            await group.spawn(run_body)
        return out[0], sib.result
    import pet_executor

    sib_handle = pet_executor.spawn(sibling)
    await pet_executor.spawn(run_body)
    return out[0], await sib_handle


def test_guest_pet_closing_is_run_finished_error(host: Driver, guest: Driver) -> None:
    """A guest pet that closes under the call: RunFinishedError, the guest's
    cleanup ran, and a sibling of the host keeps running."""
    pet = PetExecutor(guest.runtime, name=f"closing-{guest.id}", **guest.pet_options())
    started, cleaned = threading.Event(), threading.Event()

    async def long() -> None:
        started.set()
        try:
            await guest.sleep(60)
        finally:
            cleaned.set()

    async def caller() -> BaseException:
        try:
            await adapters.call(pet, long)
        except BaseException as error:
            return error
        raise AssertionError("the call returned")

    async def closer() -> None:
        await wait_for(started)
        await bridge.spawn_blocking(pet.close)

    async def main() -> tuple[BaseException, str]:
        async def both() -> BaseException:
            error: BaseException = (await _with_sibling(host.runtime, caller))[0]
            return error

        error: BaseException = await _gather2(host.runtime, both, closer)
        return error, "ok"

    try:
        error, _ = host.run(main)
    finally:
        pet.close()
    assert isinstance(error, RunFinishedError), repr(error)
    assert pet.name in str(error)
    assert cleaned.is_set()


async def _gather2(runtime: str, first: Any, second: Any) -> Any:
    """Run two coroutines functions concurrently in the host; first's result."""
    holder: list[Any] = []

    async def keep() -> None:
        holder.append(await first())

    if runtime == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep)
            nursery.start_soon(second)
    elif runtime == "asyncio":
        import asyncio

        await asyncio.gather(keep(), second())
    elif runtime == "curio":
        import curio

        async with curio.TaskGroup(wait=all) as group:
            await group.spawn(keep)
            await group.spawn(second)
    else:
        import pet_executor

        handle = pet_executor.spawn(second)
        await keep()
        await handle
    return holder[0]


# -- routing and bad input -----------------------------------------------------------------


def test_own_runtime_by_name_is_a_plain_await(driver: Driver) -> None:
    host = driver

    async def where() -> int:
        return threading.get_ident()

    async def main() -> tuple[int, int]:
        return await adapters.call(host.runtime, where), threading.get_ident()

    inside, outside = host.run(main)
    assert inside == outside


def test_names_route_to_the_shared_pet(driver: Driver) -> None:
    others = [d for d in DRIVERS if d.runtime != driver.runtime and not d.marks()]

    async def where() -> str:
        return threading.current_thread().name

    async def main() -> list[str]:
        return [await adapters.call(other.runtime, where) for other in others]

    names = driver.run(main)
    assert names == [bridge.pet(o.runtime).name for o in others]


def test_unknown_runtime_lists_the_known_ones() -> None:
    async def main() -> None:
        await adapters.call("tokio", _noop)

    with pytest.raises(LookupError, match="unknown runtime 'tokio'") as info:
        DRIVERS[0].run(main)
    for name in adapters.RUNTIMES:
        assert repr(name) in str(info.value)


def sync_work(x: int) -> int:
    return x


async def agen() -> Any:
    yield 1


def test_a_sync_function_is_a_type_error_with_the_fix() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"sync_work is a sync function") as info:
            await adapters.call("trio", sync_work, 1)  # type: ignore[arg-type]
        assert "await bridge.spawn_blocking(sync_work, *args)" in str(info.value)
        with pytest.raises(TypeError, match="async generator function") as info:
            await adapters.call("trio", agen)
        assert "adapters.iterate('trio', agen())" in str(info.value)

    DRIVERS[0].run(main)


@pytest.mark.skipif(not PY312, reason="curio imports on Python 3.10 and 3.11")
def test_curio_on_python_312_is_unavailable() -> None:
    async def main() -> None:
        await adapters.call("curio", _noop)

    with pytest.raises(RuntimeUnavailableError, match=r"curio 1\.6"):
        DRIVERS[0].run(main)


def test_outside_a_task_is_refused_with_the_fix() -> None:
    coro = adapters.call("trio", _noop)
    with pytest.raises(bridge.NoRuntimeError, match="must be awaited in a task"):
        coro.send(None)


def test_a_bad_target_says_what_targets_are() -> None:
    async def main() -> None:
        await adapters.call(3, _noop)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="a runtime name, a token or a PetExecutor"):
        DRIVERS[0].run(main)


def test_a_token_target_runs_on_that_exact_run(
    host: Driver, guest: Driver, guest_pets: Pets
) -> None:
    pet = guest_pets(guest)

    async def token() -> Any:
        return bridge.current_context().token

    target = pet.call(token)

    async def where() -> str:
        return threading.current_thread().name

    async def main() -> str:
        return await adapters.call(target, where)

    assert host.run(main) == pet.name
