"""PetExecutor: one run of any runtime on a thread of its own."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from typing import Any

import pytest

import bridge
from bridge import BlockingInLoopError, Context, PetClosedError
from pet_executor._host import PetExecutor
from tests.runtimes import Driver, driver_params

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@pytest.fixture
def pet(driver: Driver) -> Any:
    with PetExecutor(driver.runtime, **driver.pet_options()) as p:
        yield p


def test_call_returns_and_runs_on_the_pet_thread(pet: PetExecutor, driver: Driver) -> None:
    async def where(x: int) -> tuple[int, str, Context]:
        await driver.sleep(0)
        return x + 1, threading.current_thread().name, bridge.current_context()

    value, thread_name, ctx = pet.call(where, 41)
    assert value == 42
    assert thread_name == pet.name
    assert (ctx.runtime, ctx.role, ctx.in_task) == (driver.runtime, "event_loop", True)
    assert ctx.hosted is True
    assert pet.call(where, 1)[2].token == ctx.token, "one run serves every call"


def test_errors_keep_type_and_traceback(pet: PetExecutor) -> None:
    async def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom") as info:
        pet.call(fails)
    assert "fails" in {entry.name for entry in info.traceback}


def test_contextvars_are_copied_in(pet: PetExecutor) -> None:
    async def read_and_set() -> str:
        value = VAR.get()
        VAR.set("changed in the pet")
        return value

    token = VAR.set("from the caller")
    try:
        assert pet.call(read_and_set) == "from the caller"
        assert VAR.get() == "from the caller", "changes do not come back from a call"
    finally:
        VAR.reset(token)


def test_cancel_ends_cancelled_only_after_cleanup(pet: PetExecutor, driver: Driver) -> None:
    started = threading.Event()
    cleaned = threading.Event()

    async def long() -> None:
        started.set()
        try:
            await driver.sleep(60)
        finally:
            cleaned.set()

    future = pet.submit(long)
    assert started.wait(10)
    assert future.cancel() is True
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(10)
    assert cleaned.is_set(), "the task's finally ran before the future ended cancelled"
    assert future.cancelled()
    assert future.cancel() is False, "a finished future cannot be cancelled again"


def test_timeout_cancels_and_raises_builtin_timeout(pet: PetExecutor, driver: Driver) -> None:
    started = threading.Event()
    cleaned = threading.Event()

    async def long() -> None:
        started.set()
        try:
            await driver.sleep(60)
        finally:
            cleaned.set()

    async def warm_up() -> None:
        return None

    pet.call(warm_up)  # the pet's run is up: the timeout measures the work
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2 s"):
        pet.call(long, timeout=0.2)
    # Work that started had its cleanup run before call() raised (under a
    # heavy load the timeout may even win before it starts: then nothing ran).
    assert cleaned.is_set() == started.is_set()


def test_close_gives_every_call_one_outcome(driver: Driver) -> None:
    pet = PetExecutor(driver.runtime, **driver.pet_options())
    started = threading.Event()
    cleaned = threading.Event()

    async def long() -> None:
        started.set()
        try:
            await driver.sleep(60)
        finally:
            cleaned.set()

    async def quick() -> str:
        return "done"

    running = pet.submit(long)
    assert started.wait(10)
    assert pet.call(quick) == "done"
    pet.close()
    with pytest.raises(PetClosedError, match="closed while the call was pending"):
        running.result(0)
    assert cleaned.is_set()
    with pytest.raises(PetClosedError, match="the pet is closed"):
        pet.call(quick)
    with pytest.raises(PetClosedError):
        pet.submit(quick)
    pet.close()  # idempotent


def test_call_from_a_loop_thread_is_refused(pet: PetExecutor, driver: Driver) -> None:
    async def nothing() -> None:
        return None

    async def main() -> None:
        pet.call(nothing)

    with pytest.raises(BlockingInLoopError, match=f"running {driver.runtime}'s event loop"):
        driver.run(main)


def test_not_async_is_a_type_error_with_the_fix() -> None:
    with PetExecutor("asyncio") as pet:
        with pytest.raises(
            TypeError, match=r"expected an async function, but sync_fn returned int"
        ):
            pet.call(sync_fn)
        with pytest.raises(TypeError, match="expected an awaitable or an async function, got int"):
            pet.call(3)  # type: ignore[arg-type]


def sync_fn() -> int:
    return 1


def test_shared_pet_is_reused_and_remade_after_close() -> None:
    first = bridge.pet("asyncio")
    assert bridge.pet("asyncio") is first
    first.close()
    second = bridge.pet("asyncio")
    assert second is not first
    assert not second.closed


def test_unknown_runtime() -> None:
    with pytest.raises(LookupError, match="unknown runtime 'tokio'"):
        PetExecutor("tokio")


def test_lazy_start() -> None:
    before = threading.active_count()
    pet = PetExecutor("asyncio")
    assert threading.active_count() == before, "no thread until the first call"
    assert "idle" in repr(pet)
    pet.close()


async def _current_task(runtime: str) -> Any:
    """The task running this code, the runtime's own object."""
    if runtime == "trio":
        import trio

        return trio.lowlevel.current_task()
    if runtime == "curio":
        import curio

        return await curio.current_task()
    if runtime == "pet_executor":
        import pet_executor

        return pet_executor.current_task()
    import asyncio

    return asyncio.current_task()


def _task_id(driver: Driver) -> Any:
    async def current() -> object:
        return id(await _current_task(driver.runtime))

    return current


def test_iterate_runs_every_step_in_one_task(pet: PetExecutor, driver: Driver) -> None:
    finalised = threading.Event()
    current = _task_id(driver)

    async def numbers(n: int) -> Any:
        try:
            for i in range(n):
                await driver.sleep(0)
                yield i, await current()
        finally:
            finalised.set()

    steps = list(pet.iterate(numbers(4)))
    assert [i for i, _ in steps] == [0, 1, 2, 3]
    assert len({task for _, task in steps}) == 1, "one dedicated task for every step"
    assert finalised.is_set()


def test_abandoned_iterator_is_finalised_on_the_pet(pet: PetExecutor, driver: Driver) -> None:
    finalised_on: list[str] = []

    async def endless() -> Any:
        try:
            while True:
                await driver.sleep(0)
                yield 1
        finally:
            finalised_on.append(threading.current_thread().name)

    iterator = pet.iterate(endless())
    assert next(iterator) == 1
    iterator.close()
    assert finalised_on == [pet.name]


def test_close_ends_an_iterator_left_open(driver: Driver) -> None:
    """An open iterator's task waits for its next step: closing the pet
    cancels it at once (the close does not sit out its whole bound) and the
    generator is finalised on the pet."""
    finalised_on: list[str] = []

    async def endless() -> Any:
        try:
            while True:
                await driver.sleep(0)
                yield 1
        finally:
            finalised_on.append(threading.current_thread().name)

    pet = PetExecutor(driver.runtime, **driver.pet_options())
    iterator = pet.iterate(endless())
    assert next(iterator) == 1
    started = time.monotonic()
    pet.close(timeout=30)
    assert time.monotonic() - started < 10, "the close waited out its bound"
    assert finalised_on == [pet.name]
    with pytest.raises(PetClosedError):
        next(iterator)


def test_close_exits_a_context_manager_left_open(driver: Driver) -> None:
    exited: list[tuple[str, str]] = []

    class Resource:
        async def __aenter__(self) -> str:
            return "in"

        async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            exited.append((threading.current_thread().name, exc_type.__name__))

    pet = PetExecutor(driver.runtime, **driver.pet_options())
    entered = pet.enter(Resource())
    assert entered.__enter__() == "in"
    pet.close(timeout=30)
    assert exited == [(pet.name, type(bridge_cancel(driver)).__name__)]
    with pytest.raises(PetClosedError):
        entered.__exit__(None, None, None)


def bridge_cancel(driver: Driver) -> BaseException:
    import adapters

    return adapters.get(driver.runtime).cancel_exception()


def test_iterate_errors_cross(pet: PetExecutor) -> None:
    async def broken() -> Any:
        yield 1
        raise ValueError("in the generator")

    iterator = pet.iterate(broken())
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="in the generator"):
        next(iterator)


def test_enter_runs_enter_and_exit_in_one_task_and_can_suppress(
    pet: PetExecutor, driver: Driver
) -> None:
    import contextlib

    current = _task_id(driver)
    seen: list[object] = []

    @contextlib.asynccontextmanager
    async def resource() -> Any:
        seen.append(await current())
        try:
            yield "value"
        except KeyError:
            seen.append("suppressed")
        finally:
            seen.append(await current())

    with pet.enter(resource()) as value:
        assert value == "value"
    assert seen[0] == seen[1], "__aenter__ and __aexit__ ran in the same task"
    with pet.enter(resource()):
        raise KeyError("swallowed by the context manager")
    assert "suppressed" in seen
    with pytest.raises(ZeroDivisionError), pet.enter(resource()):
        1 / 0  # noqa: B018


def test_iterate_from_a_loop_thread_is_refused(pet: PetExecutor, driver: Driver) -> None:
    async def gen() -> Any:
        yield 1

    async def main() -> None:
        next(iter(pet.iterate(gen())))

    with pytest.raises(BlockingInLoopError, match=r"\.iterate"):
        driver.run(main)


def test_sixteen_threads_for_ten_seconds_lose_no_call() -> None:
    """16 threads call one asyncio pet at once for 10 s: every call is
    answered with its own result; the rate is reported."""
    import time

    duration = 10.0
    answered = [0] * 16
    wrong: list[tuple[int, int, int]] = []

    async def echo(value: int) -> int:
        return value

    with PetExecutor("asyncio", name="pet-load") as pet:
        start = time.monotonic()

        def caller(index: int) -> None:
            n = 0
            while time.monotonic() - start < duration:
                value = index * 1_000_000_000 + n
                got = pet.call(echo, value)
                if got != value:
                    wrong.append((index, value, got))
                n += 1
            answered[index] = n

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + 30)
        elapsed = time.monotonic() - start
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
    assert all(n > 0 for n in answered)
    print(f"\n16 threads -> one asyncio pet: {sum(answered) / elapsed:,.0f} calls/s")


def test_a_dead_pet_thread_fails_its_callers_and_restarts() -> None:
    """The pet's run ends abnormally: pending callers get PetClosedError
    (with the cause), and the next call starts a new run."""
    import asyncio

    pet = PetExecutor("asyncio", name="pet-dies")
    try:
        started = threading.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(3600)

        async def kill_the_loop() -> None:
            asyncio.get_running_loop().stop()  # the run ends under the pending call

        pending = pet.submit(forever)
        assert started.wait(10)
        pet.submit(kill_the_loop)
        with pytest.raises(bridge.RunFinishedError, match="ended under it"):
            pending.result(10)
        # A call racing with the run's death gets PetClosedError; once the
        # dead thread is gone, the next call starts a new run.
        dead = pet._thread
        assert dead is not None
        dead.join(10)
        assert not dead.is_alive()

        async def alive() -> str:
            return "a new run"

        assert pet.call(alive) == "a new run"
    finally:
        pet.close()


def test_runners_close_when_their_thread_ends() -> None:
    import asyncio
    import gc

    loops: list[asyncio.AbstractEventLoop] = []

    async def grab() -> None:
        loops.append(asyncio.get_running_loop())

    def body() -> None:
        bridge.block_on(grab)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    gc.collect()
    assert loops[0].is_closed(), "the thread's cached loop was closed when it ended"


#: The pets that keep their work tasks between calls.
KEEPS_WORK_TASKS = driver_params(lambda d: d.id in ("trio", "pet_executor"))


@pytest.mark.parametrize("driver", KEEPS_WORK_TASKS)
def test_work_tasks_are_reused_each_item_in_its_own_context(driver: Driver) -> None:
    """Some pets run calls in work tasks they keep: the next call reuses an
    idle one, named after the work, with none of the last item's context."""

    async def first() -> tuple[object, str]:
        VAR.set("set by the first call")
        task = await _current_task(driver.runtime)
        return task, task.name

    async def second() -> tuple[object, str, str]:
        task = await _current_task(driver.runtime)
        return task, task.name, VAR.get()

    with PetExecutor(driver.runtime) as pet:
        task_one, name_one = pet.call(first)
        task_two, name_two, seen = pet.call(second)
    assert task_one is task_two, "the idle work task took the next call"
    assert (name_one, name_two) == (
        "test_work_tasks_are_reused_each_item_in_its_own_context.<locals>.first",
        "test_work_tasks_are_reused_each_item_in_its_own_context.<locals>.second",
    )
    assert seen == "unset", "nothing of the first call's context reached the second"


@pytest.mark.parametrize("driver", KEEPS_WORK_TASKS)
def test_a_work_task_whose_item_was_cancelled_is_not_reused(driver: Driver) -> None:
    """Cancelling an item cancels its work task, which ends after the item's
    cleanup: the next call runs in another task."""
    started, cleaned = threading.Event(), threading.Event()
    tasks: list[object] = []  # kept alive: compared by identity

    async def long() -> None:
        tasks.append(await _current_task(driver.runtime))
        started.set()
        try:
            await driver.sleep(60)
        finally:
            cleaned.set()

    async def current() -> object:
        return await _current_task(driver.runtime)

    with PetExecutor(driver.runtime) as pet:
        assert pet.call(current) is pet.call(current), "an idle task takes the next call"
        cancelled = pet.submit(long)
        assert started.wait(10)
        assert cancelled.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            cancelled.result(10)
        assert cleaned.is_set()
        assert pet.call(current) is not tasks[0], "the cancelled item's task ended"
