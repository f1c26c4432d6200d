"""Cross-runtime await (``adapters.call``) against the peers and the floors.

Four groups:

- ``adapters_peer``: asyncio awaiting trio and trio awaiting asyncio, a
  no-op each, through ``adapters.call`` to the other runtime's pet, against
  trio_asyncio's ``trio_as_aio`` / ``aio_as_trio`` (both loops on one thread);
  and the placement of a trio guest: the same bare requests into a trio
  guest run on the host's loop and into a trio run on a thread of its own;
- ``adapters_pairs``: the round trip of ``adapters.call(pet, noop)`` for each
  of the 25 ordered host x guest pairs, against each runtime's cross-thread
  wake floor (another thread wakes a task of the runtime, the runtime's own
  thread-safe way); a pair's goal is 2x the floor of the slower of its two
  runtimes (the ranking below is the measured order of the floors);
- ``adapters_pet_event``: a pet_executor ``Event`` awaited from asyncio,
  trio and curio tasks, set by a sibling task on the same thread, against the
  host's own event, as a ping-pong between two tasks;
- ``adapters_memory``: bytes per ``adapters.call`` in flight (2,000 at once).

Every row that crosses threads pins its worker to one CPU (``one_cpu``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from benchmarks import Group, Timer
from benchmarks._pin import one_cpu
from benchmarks.bench_pet import _setter, asyncio_wake_round_trips

#: The runtimes as ``inside=`` spells them, and how to make a pet of each.
RUNTIMES = ("asyncio", "uvloop", "trio", "curio", "pet_executor")

#: Floors from slowest to fastest, as measured (2-CPU VM, rows pinned: trio
#: ~21 µs, its wakeup socket, entry-queue task and a second batch for the
#: woken task; curio ~16 µs, a socket and its kernel task; asyncio ~14 µs, its
#: self-pipe; uvloop ~8 µs and pet_executor ~6 µs, the cheapest).
SLOWEST_FIRST = ("trio", "curio", "asyncio", "uvloop", "pet_executor")

WAKES = 200


async def noop() -> int:
    return 1


def _pet(runtime: str) -> Any:
    from pet_executor._host import PetExecutor

    if runtime == "uvloop":
        import uvloop

        return PetExecutor("asyncio", name="bench-uvloop", loop_factory=uvloop.new_event_loop)
    return PetExecutor(runtime, name=f"bench-{runtime}")


def _requires(*runtimes: str) -> tuple[str, ...]:
    return tuple(
        {"uvloop": "uvloop", "trio": "trio", "curio": "curio"}[r]
        for r in runtimes
        if r in ("uvloop", "trio", "curio")
    )


async def _close(pet: Any) -> None:
    import bridge

    await bridge.spawn_blocking(pet.close)


# =============================================================================
# 1. asyncio <-> trio against trio_asyncio
# =============================================================================

peer = Group(
    "adapters_peer",
    "asyncio awaiting trio and trio awaiting asyncio (a no-op), adapters.call to the other "
    "runtime's pet against trio_asyncio (both loops on one thread)",
)


@peer.case(
    "trio_asyncio: await aio_as_trio(noop)()  [trio task, asyncio noop]",
    inside="trio",
    requires=("trio_asyncio",),
)
async def aio_as_trio() -> AsyncIterator[Callable[[], Awaitable[object]]]:
    one_cpu()
    import trio_asyncio

    async with trio_asyncio.open_loop():
        yield trio_asyncio.aio_as_trio(noop)


@peer.case(
    "adapters.call(asyncio pet, noop)  [trio task]",
    inside="trio",
    goal="<= 1.5x aio_as_trio",
)
async def trio_awaits_asyncio() -> AsyncIterator[Callable[[], Awaitable[object]]]:
    one_cpu()
    import adapters

    pet = _pet("asyncio")
    call = adapters.call
    await call(pet, noop)
    try:
        yield lambda: call(pet, noop)
    finally:
        await _close(pet)


@peer.case(
    "trio_asyncio: await trio_as_aio(noop)()  [asyncio task on trio_asyncio's loop, trio noop]",
    inside="trio",
    requires=("trio_asyncio",),
)
async def trio_as_aio(timer: Timer) -> None:
    one_cpu()
    import trio_asyncio

    call = trio_asyncio.trio_as_aio(noop)

    async def asyncio_side() -> None:
        await timer.time_async(call)

    async with trio_asyncio.open_loop():
        await trio_asyncio.aio_as_trio(asyncio_side)()


@peer.case(
    "adapters.call(trio pet, noop)  [asyncio task]",
    inside="asyncio",
    requires=("trio",),
    goal="<= 1.5x trio_as_aio",
)
async def asyncio_awaits_trio() -> AsyncIterator[Callable[[], Awaitable[object]]]:
    one_cpu()
    import adapters

    pet = _pet("trio")
    call = adapters.call
    await call(pet, noop)
    try:
        yield lambda: call(pet, noop)
    finally:
        await _close(pet)


@peer.case(
    "trio guest mode on the host's loop: token.run_sync_soon to a trio task that answers  "
    "[asyncio task, trio noop]",
    inside="asyncio",
    requires=("trio",),
    vs=("asyncio_awaits_trio", "trio_as_aio"),
)
async def trio_guest_mode(timer: Timer) -> None:
    """What a trio guest run on the asyncio host's own loop would cost per
    call (the placement docs/adapters.md turns down): the request reaches the
    run through its token (trio's I/O thread wakes, then hands the tick back
    to the host loop), the guest task answers on the host's thread."""
    one_cpu()
    import asyncio

    import trio

    loop = asyncio.get_running_loop()
    started: asyncio.Future[Any] = loop.create_future()
    ended: asyncio.Future[Any] = loop.create_future()
    trio.lowlevel.start_guest_run(
        _bare_trio_guest(started, _call_here),
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=ended.set_result,
    )
    await _time_bare_requests(timer, started)
    (await ended).unwrap()


@peer.case(
    "trio run on a thread of its own, the same requests: token.run_sync_soon to a trio task "
    "that answers through call_soon_threadsafe  [asyncio task, trio noop]",
    inside="asyncio",
    requires=("trio",),
    vs="trio_guest_mode",
)
async def trio_thread_bare(timer: Timer) -> None:
    """``trio_guest_mode``'s protocol with the trio run where the pet puts
    it, on a thread of its own: placement alone, none of adapters.call's
    cancellation, contextvars, portal and notes."""
    one_cpu()
    import asyncio

    import trio

    loop = asyncio.get_running_loop()
    started: asyncio.Future[Any] = loop.create_future()
    guest = _bare_trio_guest(started, loop.call_soon_threadsafe)
    thread = threading.Thread(target=trio.run, args=(guest,), name="bench-trio", daemon=True)
    thread.start()
    await _time_bare_requests(timer, started)
    await asyncio.to_thread(thread.join)


def _call_here(fn: Callable[[Any], object], value: Any) -> None:
    fn(value)


def _bare_trio_guest(
    started: Any, answer_with: Callable[[Callable[[Any], object], Any], object]
) -> Callable[[], Awaitable[None]]:
    """A trio main task that takes (fn, asyncio future) requests from a
    memory channel until it closes and answers each with ``await fn()``,
    completing the host's futures through ``answer_with(set_result, value)``.
    It first hands the host (token, channel) through ``started``."""

    async def guest() -> None:
        import math

        import trio

        send, receive = trio.open_memory_channel[Any](math.inf)
        answer_with(started.set_result, (trio.lowlevel.current_trio_token(), send))
        async with receive:
            async for fn, answer in receive:
                answer_with(answer.set_result, await fn())

    return guest


async def _time_bare_requests(timer: Timer, started: Any) -> None:
    """Time requests to a ``_bare_trio_guest``: ``token.run_sync_soon`` puts
    each on its channel; the row awaits the answer. Closes the channel after."""
    import asyncio

    token, send = await started
    loop = asyncio.get_running_loop()

    def call() -> asyncio.Future[Any]:
        answer = loop.create_future()
        token.run_sync_soon(send.send_nowait, (noop, answer))
        return answer

    try:
        await timer.time_async(call)
    finally:
        token.run_sync_soon(send.close)


# =============================================================================
# 2. The 25 pairs against the cross-thread wake floors
# =============================================================================

pairs = Group(
    "adapters_pairs",
    "adapters.call(pet, noop) round trip for every host x guest pair, against each runtime's "
    "cross-thread wake floor (another thread wakes a task, the runtime's own thread-safe way)",
)


def _waker_thread(
    wake_one: Callable[[Any], object],
) -> tuple[queue.SimpleQueue[Any], threading.Thread]:
    """A thread that calls ``wake_one(item)`` for each item put, until None."""
    to_thread: queue.SimpleQueue[Any] = queue.SimpleQueue()
    return to_thread, _setter(to_thread, wake_one)


@pairs.case(
    "floor: thread -> call_soon_threadsafe(fut.set_result)  [asyncio]", inside="asyncio", ops=WAKES
)
async def floor_asyncio(timer: Timer) -> None:
    one_cpu()
    await asyncio_wake_round_trips(timer, WAKES)


@pairs.case(
    "floor: thread -> call_soon_threadsafe(fut.set_result)  [uvloop]", inside="uvloop", ops=WAKES
)
async def floor_uvloop(timer: Timer) -> None:
    one_cpu()
    await asyncio_wake_round_trips(timer, WAKES)


@pairs.case(
    "floor: thread -> token.run_sync_soon(reschedule, task)  [trio]", inside="trio", ops=WAKES
)
async def floor_trio(timer: Timer) -> None:
    one_cpu()
    import trio

    token = trio.lowlevel.current_trio_token()
    task = trio.lowlevel.current_task()
    reschedule = trio.lowlevel.reschedule
    to_thread, thread = _waker_thread(lambda _: token.run_sync_soon(reschedule, task))
    put, wait, wakes = to_thread.put, trio.lowlevel.wait_task_rescheduled, range(WAKES)

    def abort(_: object) -> trio.lowlevel.Abort:
        return trio.lowlevel.Abort.FAILED

    async def round_trips() -> None:
        for i in wakes:
            put(i)
            await wait(abort)

    try:
        await timer.time_async(round_trips)
    finally:
        put(None)
        thread.join()


@pairs.case(
    "floor: thread -> cf.set_result, task in _future_wait(cf)  [curio]", inside="curio", ops=WAKES
)
async def floor_curio(timer: Timer) -> None:
    one_cpu()
    from concurrent.futures import Future

    from curio.traps import _future_wait

    to_thread, thread = _waker_thread(lambda fut: fut.set_result(None))
    put, wakes = to_thread.put, range(WAKES)

    async def round_trips() -> None:
        for _ in wakes:
            future: Future[None] = Future()
            put(future)
            await _future_wait(future)

    try:
        await timer.time_async(round_trips)
    finally:
        put(None)
        thread.join()


@pairs.case("floor: thread -> pe.Event.set  [pet_executor]", inside="pet_executor", ops=WAKES)
async def floor_pet_executor(timer: Timer) -> None:
    one_cpu()
    import pet_executor as pe

    to_thread, thread = _waker_thread(pe.Event.set)
    put, new_event, wakes = to_thread.put, pe.Event, range(WAKES)

    async def round_trips() -> None:
        for _ in wakes:
            event = new_event()
            put(event)
            await event.wait()

    try:
        await timer.time_async(round_trips)
    finally:
        put(None)
        thread.join()


def _slower(a: str, b: str) -> str:
    return a if SLOWEST_FIRST.index(a) < SLOWEST_FIRST.index(b) else b


def _pair_row(host: str, guest: str) -> None:
    async def row() -> AsyncIterator[Callable[[], Awaitable[object]]]:
        one_cpu()
        import adapters

        pet = _pet(guest)
        call = adapters.call
        await call(pet, noop)
        try:
            yield lambda: call(pet, noop)
        finally:
            await _close(pet)

    row.__name__ = f"{host}_to_{guest}"
    pairs.case(
        f"adapters.call({guest} pet, noop)  [{host} task]",
        inside=host,
        requires=_requires(guest),
        goal=f"<= 2x floor_{_slower(host, guest)}",
    )(row)


for _host in RUNTIMES:
    for _guest in RUNTIMES:
        _pair_row(_host, _guest)


# =============================================================================
# 3. A pet_executor Event awaited from a foreign task, same thread
# =============================================================================

PINGS = 100

pet_event = Group(
    "adapters_pet_event",
    f"{PINGS} ping-pongs between two tasks of one run, each waiting for an event the other "
    "sets: a pet_executor Event awaited from asyncio, trio and curio against the host's own",
)


def _ping_pong(
    make_event: Callable[[], Any], spawn_pair: Any, *, set_is_async: bool = False
) -> Callable[[], Awaitable[None]]:
    """Two tasks: A sets b[i] then waits a[i]; B waits b[i] then sets a[i]."""
    rounds = range(PINGS)

    async def run() -> None:
        a = [make_event() for _ in rounds]
        b = [make_event() for _ in rounds]

        async def first() -> None:
            for i in rounds:
                if set_is_async:  # curio's Event.set is a coroutine
                    await b[i].set()
                else:
                    b[i].set()
                await a[i].wait()

        async def second() -> None:
            for i in rounds:
                await b[i].wait()
                if set_is_async:
                    await a[i].set()
                else:
                    a[i].set()

        await spawn_pair(first, second)

    return run


async def _asyncio_pair(first: Any, second: Any) -> None:
    import asyncio

    await asyncio.gather(first(), second())


async def _trio_pair(first: Any, second: Any) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        nursery.start_soon(second)
        nursery.start_soon(first)


async def _curio_pair(first: Any, second: Any) -> None:
    import curio

    task = await curio.spawn(second)
    await first()
    await task.join()


@pet_event.case("asyncio.Event  [asyncio]", inside="asyncio", ops=PINGS)
def asyncio_event() -> Callable[[], Awaitable[None]]:
    import asyncio

    return _ping_pong(asyncio.Event, _asyncio_pair)


@pet_event.case(
    "pet_executor.Event  [asyncio]", inside="asyncio", ops=PINGS, goal="<= 2x asyncio_event"
)
def pet_event_asyncio() -> Callable[[], Awaitable[None]]:
    import pet_executor

    return _ping_pong(pet_executor.Event, _asyncio_pair)


@pet_event.case("trio.Event  [trio]", inside="trio", ops=PINGS)
def trio_event() -> Callable[[], Awaitable[None]]:
    import trio

    return _ping_pong(trio.Event, _trio_pair)


@pet_event.case("pet_executor.Event  [trio]", inside="trio", ops=PINGS, goal="<= 2x trio_event")
def pet_event_trio() -> Callable[[], Awaitable[None]]:
    import pet_executor

    return _ping_pong(pet_executor.Event, _trio_pair)


@pet_event.case("curio.Event  [curio]", inside="curio", ops=PINGS)
def curio_event() -> Callable[[], Awaitable[None]]:
    import curio

    return _ping_pong(curio.Event, _curio_pair, set_is_async=True)


@pet_event.case("pet_executor.Event  [curio]", inside="curio", ops=PINGS, goal="<= 2x curio_event")
def pet_event_curio() -> Callable[[], Awaitable[None]]:
    import pet_executor

    return _ping_pong(pet_executor.Event, _curio_pair)


# =============================================================================
# 4. Memory per await in flight
# =============================================================================

IN_FLIGHT = 2_000

memory = Group("adapters_memory", f"memory per adapters.call in flight ({IN_FLIGHT:,} at once)")


async def _bytes_per_call(guest: str) -> float:
    import asyncio
    import tracemalloc

    import adapters
    import pet_executor

    pet = _pet(guest)
    release, all_in = pet_executor.Event(), pet_executor.Event()
    count = [0]

    async def parked() -> None:
        count[0] += 1
        if count[0] == IN_FLIGHT:
            all_in.set()
        await release.wait()

    await adapters.call(pet, noop)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        calls = [asyncio.ensure_future(adapters.call(pet, parked)) for _ in range(IN_FLIGHT)]
        await all_in.wait()
        during = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        release.set()
    await asyncio.gather(*calls)
    await _close(pet)
    return (during - before) / IN_FLIGHT


@memory.metric(
    "adapters.call(trio pet, fn) in flight, host and guest sides  [asyncio task]",
    unit="B/call",
    inside="asyncio",
    requires=("trio",),
)
async def memory_asyncio_to_trio() -> float:
    return await _bytes_per_call("trio")


@memory.metric(
    "adapters.call(asyncio pet, fn) in flight, host and guest sides  [asyncio task]",
    unit="B/call",
    inside="asyncio",
)
async def memory_asyncio_to_asyncio() -> float:
    return await _bytes_per_call("asyncio")
