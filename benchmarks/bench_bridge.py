"""The bridge's calls against the peers', issue 4's "Benchmarks" section.

Five groups, each row compared with its peers measured in the same run:

- ``block_on``: ``bridge.block_on(noop)`` from a plain thread (the main thread
  and another one) against ``loop.run_until_complete`` on a reused loop and
  ``asyncio.run``;
- ``pet_call``: ``PetExecutor.call(noop)`` from another thread against the
  asyncio wake floor, ``run_coroutine_threadsafe``, anyio's blocking portal,
  synchronicity and asgiref (and the pet_executor pet against a SimpleQueue
  thread ping-pong);
- ``reentry``: ``block_on`` from a ``spawn_blocking`` worker back to its loop
  against ``anyio.from_thread.run`` and ``trio.from_thread.run`` from their
  own workers, timed inside the worker thread;
- ``spawn_blocking``: against ``asyncio.to_thread``, anyio's, trio's and
  curio's offload calls;
- ``pet_load``: 16 threads calling one asyncio pet at once, in calls/s,
  against the same load through ``run_coroutine_threadsafe``.

Each row builds what it needs (loops, threads, pets, portals) per round and
tears it down after, so no row measures another's leftovers.

One CPU per row. Every row whose operation crosses threads pins its worker
process to one CPU first (``one_cpu`` from ``benchmarks/_pin.py``, which says
why), peers and floors alike. Set ``BENCH_PIN_CPU=0`` to measure unpinned.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks import Group, Skip, Timer
from benchmarks._pin import one_cpu


async def noop() -> int:
    return 1


def sync_noop() -> int:
    return 1


# =============================================================================
# 1. block_on(noop) from a plain thread
# =============================================================================

block_on = Group(
    "block_on",
    "bridge.block_on(noop) from a plain thread against run_until_complete and asyncio.run",
)


def _reused_loop() -> Iterator[Callable[[], object]]:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        yield lambda: loop.run_until_complete(noop())
    finally:
        loop.close()


def _asyncio_run() -> Callable[[], object]:
    import asyncio

    return lambda: asyncio.run(noop())


def _block_on() -> Iterator[Callable[[], object]]:
    import bridge

    block = bridge.block_on
    try:
        yield lambda: block(noop)
    finally:
        bridge.close_thread_runners()


@block_on.case("loop.run_until_complete(noop())  [reused loop, main thread]")
def loop_ruc() -> Iterator[Callable[[], object]]:
    yield from _reused_loop()


@block_on.case("asyncio.run(noop())  [main thread]")
def asyncio_run() -> Callable[[], object]:
    return _asyncio_run()


@block_on.case(
    "bridge.block_on(noop)  [main thread]",
    goal=("<= 1.0x loop_ruc", ">= 5x faster than asyncio_run"),
)
def block_on_main() -> Iterator[Callable[[], object]]:
    yield from _block_on()


@block_on.case("loop.run_until_complete(noop())  [reused loop, another thread]", inside="thread")
def loop_ruc_thread() -> Iterator[Callable[[], object]]:
    yield from _reused_loop()


@block_on.case("asyncio.run(noop())  [another thread]", inside="thread")
def asyncio_run_thread() -> Callable[[], object]:
    return _asyncio_run()


@block_on.case(
    "bridge.block_on(noop)  [another thread]",
    inside="thread",
    goal=("<= 1.0x loop_ruc_thread", ">= 5x faster than asyncio_run_thread"),
)
def block_on_thread() -> Iterator[Callable[[], object]]:
    yield from _block_on()


# =============================================================================
# 2. PetExecutor.call(noop) from another thread
# =============================================================================

pet_call = Group(
    "pet_call",
    "PetExecutor.call(noop) from another thread against the wake floor and the peers' portals",
)

#: issue 4: at most 1.5x the asyncio wake floor, 1.2x on Python 3.12+.
PET_FLOOR_GOAL = "<= 1.2x wake_floor" if sys.version_info >= (3, 12) else "<= 1.5x wake_floor"


class _LoopThread:
    """An asyncio loop running forever on a daemon thread of its own."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.loop.call_soon(started.set)
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()
        started.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pet_call.case("wake floor: call_soon_threadsafe(cf.set_result) + cf.result()  [loop thread]")
def wake_floor() -> Iterator[Callable[[], object]]:
    one_cpu()
    from concurrent.futures import Future

    host = _LoopThread()
    call_soon_threadsafe = host.loop.call_soon_threadsafe

    def wake() -> None:
        future: Future[None] = Future()
        call_soon_threadsafe(future.set_result, None)
        future.result()

    try:
        yield wake
    finally:
        host.close()


@pet_call.case("asyncio.run_coroutine_threadsafe(noop(), loop).result()  [loop thread]")
def rcts() -> Iterator[Callable[[], object]]:
    one_cpu()
    import asyncio

    host = _LoopThread()
    loop = host.loop
    run = asyncio.run_coroutine_threadsafe
    try:
        yield lambda: run(noop(), loop).result()
    finally:
        host.close()


@pet_call.case("anyio portal.call(noop)  [start_blocking_portal(), asyncio]", requires=("anyio",))
def anyio_portal() -> Iterator[Callable[[], object]]:
    one_cpu()
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        yield lambda: portal.call(noop)


@pet_call.case("synchronicity: Synchronizer().wrap(noop)()", requires=("synchronicity",))
def synchronicity() -> Iterator[Callable[[], object]]:
    one_cpu()
    from synchronicity import Synchronizer

    synchronizer = Synchronizer()
    blocking_noop = synchronizer.wrap(noop)
    try:
        yield blocking_noop
    finally:
        synchronizer._close_loop()  # type: ignore[no-untyped-call]


@pet_call.case("asgiref async_to_sync(noop)()", requires=("asgiref",))
def asgiref() -> Callable[[], object]:
    one_cpu()
    from asgiref.sync import async_to_sync

    return async_to_sync(noop)


@pet_call.case(
    "PetExecutor('asyncio').call(noop)",
    goal=(PET_FLOOR_GOAL, ">= 3x faster than anyio_portal", ">= 2x faster than synchronicity"),
    vs=("wake_floor", "rcts", "anyio_portal", "synchronicity", "asgiref"),
)
def pet_asyncio() -> Iterator[Callable[[], object]]:
    one_cpu()
    from pet_executor._host import PetExecutor

    pet = PetExecutor("asyncio", name="bench-pet-asyncio")
    try:
        yield lambda: pet.call(noop)
    finally:
        pet.close()


# --- the pet_executor pet against a SimpleQueue thread ping-pong --------------
# issue 4: "pet_executor pet: at most 1.5x the SimpleQueue thread ping-pong
# floor". The row needs pet_executor's runtime (pet_executor.run) and its
# adapter (adapters._pet_executor); it is skipped with the reason until both
# import and run.


@pet_call.case("SimpleQueue ping-pong floor: put to a thread, get its answer")
def queue_floor() -> Iterator[Callable[[], object]]:
    one_cpu()
    from queue import SimpleQueue

    to_thread: SimpleQueue[object] = SimpleQueue()
    back: SimpleQueue[object] = SimpleQueue()

    def echo() -> None:
        get, put = to_thread.get, back.put
        while (item := get()) is not None:
            put(item)

    thread = threading.Thread(target=echo, name="bench-echo", daemon=True)
    thread.start()
    put, get = to_thread.put, back.get

    def ping() -> None:
        put(1)
        get()

    try:
        yield ping
    finally:
        put(None)
        thread.join()


@pet_call.case(
    "PetExecutor('pet_executor').call(noop)",
    goal="<= 1.5x queue_floor",
    requires=("pet_executor", "adapters._pet_executor"),
)
def pet_pet_executor() -> Iterator[Callable[[], object]]:
    one_cpu()
    import pet_executor

    if getattr(pet_executor, "run", None) is None:
        raise Skip("pet_executor.run does not exist yet")
    from pet_executor._host import PetExecutor

    pet = PetExecutor("pet_executor", name="bench-pet-pet_executor")
    try:
        yield lambda: pet.call(noop)
    finally:
        pet.close()


# =============================================================================
# 3. block_on from a worker thread, back to its loop
# =============================================================================

reentry = Group(
    "reentry",
    "from a worker thread back to its loop: block_on in a spawn_blocking worker against "
    "anyio.from_thread.run and trio.from_thread.run in their own workers (timed in the worker)",
)


@reentry.case(
    "block_on(noop) in a spawn_blocking worker  [asyncio]",
    inside="asyncio",
    goal=">= 1.5x faster than anyio_reentry",
    vs="rcts_reentry",
)
async def bridge_reentry_asyncio(timer: Timer) -> None:
    one_cpu()
    import bridge

    block = bridge.block_on
    await bridge.spawn_blocking(timer.time, lambda: block(noop))


@reentry.case(
    "anyio.from_thread.run(noop) in an anyio.to_thread.run_sync worker  [asyncio]",
    inside="asyncio",
    requires=("anyio",),
)
async def anyio_reentry(timer: Timer) -> None:
    one_cpu()
    import anyio.from_thread
    import anyio.to_thread

    run = anyio.from_thread.run
    await anyio.to_thread.run_sync(timer.time, lambda: run(noop))


@reentry.case(
    "run_coroutine_threadsafe(noop(), loop).result() in an asyncio.to_thread worker  [asyncio]",
    inside="asyncio",
)
async def rcts_reentry(timer: Timer) -> None:
    one_cpu()
    import asyncio

    loop = asyncio.get_running_loop()
    run = asyncio.run_coroutine_threadsafe
    await asyncio.to_thread(timer.time, lambda: run(noop(), loop).result())


@reentry.case(
    "block_on(noop) in a spawn_blocking worker  [trio]",
    inside="trio",
    goal="<= 1.0x trio_reentry",
)
async def bridge_reentry_trio(timer: Timer) -> None:
    one_cpu()
    import bridge

    block = bridge.block_on
    await bridge.spawn_blocking(timer.time, lambda: block(noop))


@reentry.case(
    "trio.from_thread.run(noop) in a trio.to_thread.run_sync worker  [trio]", inside="trio"
)
async def trio_reentry(timer: Timer) -> None:
    one_cpu()
    import trio

    run = trio.from_thread.run
    await trio.to_thread.run_sync(timer.time, lambda: run(noop))


# =============================================================================
# 4. spawn_blocking(f) against the runtimes' own offload calls
# =============================================================================

spawn_blocking = Group(
    "spawn_blocking",
    "await bridge.spawn_blocking(f) against asyncio.to_thread, anyio, trio and curio",
)


def _spawn_blocking() -> Callable[[], object]:
    import bridge

    spawn = bridge.spawn_blocking
    return lambda: spawn(sync_noop)


@spawn_blocking.case(
    "spawn_blocking(f)  [asyncio]",
    inside="asyncio",
    goal=(">= 1.5x faster than to_thread_asyncio", ">= 1.5x faster than anyio_to_thread"),
)
def spawn_asyncio() -> Callable[[], object]:
    one_cpu()
    return _spawn_blocking()


@spawn_blocking.case("asyncio.to_thread(f)  [asyncio]", inside="asyncio")
def to_thread_asyncio() -> Callable[[], object]:
    one_cpu()
    import asyncio

    to_thread = asyncio.to_thread
    return lambda: to_thread(sync_noop)


@spawn_blocking.case(
    "anyio.to_thread.run_sync(f)  [asyncio]", inside="asyncio", requires=("anyio",)
)
def anyio_to_thread() -> Callable[[], object]:
    one_cpu()
    import anyio.to_thread

    run_sync = anyio.to_thread.run_sync
    return lambda: run_sync(sync_noop)


@spawn_blocking.case("spawn_blocking(f)  [trio]", inside="trio", goal="<= 1.0x trio_to_thread")
def spawn_trio() -> Callable[[], object]:
    one_cpu()
    return _spawn_blocking()


@spawn_blocking.case("trio.to_thread.run_sync(f)  [trio]", inside="trio")
def trio_to_thread() -> Callable[[], object]:
    one_cpu()
    import trio

    run_sync = trio.to_thread.run_sync
    return lambda: run_sync(sync_noop)


@spawn_blocking.case("spawn_blocking(f)  [curio]", inside="curio", vs="curio_run_in_thread")
def spawn_curio() -> Callable[[], object]:
    one_cpu()
    return _spawn_blocking()


@spawn_blocking.case("curio.run_in_thread(f)  [curio]", inside="curio")
def curio_run_in_thread() -> Callable[[], object]:
    one_cpu()
    import curio

    run_in_thread = curio.run_in_thread
    return lambda: run_in_thread(sync_noop)


# =============================================================================
# 5. Throughput: 16 threads calling one asyncio pet at once
# =============================================================================

#: issue 4 runs the load 10 s in the test suite; a benchmark round takes 2 s.
LOAD_BUDGET_S = 2.0
LOAD_THREADS = 16

pet_load = Group(
    "pet_load",
    f"{LOAD_THREADS} threads calling one asyncio loop thread at once, calls/s",
    budget=LOAD_BUDGET_S,
)


def _hammer(call: Callable[[], object], seconds: float) -> float:
    """Run ``call`` from LOAD_THREADS threads for ``seconds``; return calls/s.
    Every call must answer 1: a lost or wrong answer fails the round."""
    counts = [0] * LOAD_THREADS
    errors: list[BaseException] = []
    start = threading.Barrier(LOAD_THREADS + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        n = 0
        try:
            start.wait()
            end = deadline[0]
            clock = time.perf_counter
            while clock() < end:
                if call() != 1:
                    raise AssertionError("a call answered something other than 1")
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts[i] = n

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"bench-load-{i}", daemon=True)
        for i in range(LOAD_THREADS)
    ]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + 30.0)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError("a load thread is still blocked in its call 30 s after the deadline")
    return sum(counts) / elapsed


@pet_load.metric(
    f"{LOAD_THREADS} threads -> PetExecutor('asyncio').call(noop)",
    unit="calls/s",
    goal=">= 1.5x faster than rcts_load",
)
def pet_load_asyncio(timer: Timer) -> float:
    one_cpu()
    from pet_executor._host import PetExecutor

    pet = PetExecutor("asyncio", name="bench-pet-load")
    try:
        call: Callable[[], Any] = lambda: pet.call(noop)  # noqa: E731
        for _ in range(100):  # start the pet, warm the path up
            call()
        return _hammer(call, timer.budget)
    finally:
        pet.close()


@pet_load.metric(
    f"{LOAD_THREADS} threads -> run_coroutine_threadsafe(noop(), loop).result()",
    unit="calls/s",
)
def rcts_load(timer: Timer) -> float:
    one_cpu()
    import asyncio

    host = _LoopThread()
    loop = host.loop
    run = asyncio.run_coroutine_threadsafe
    try:
        call: Callable[[], Any] = lambda: run(noop(), loop).result()  # noqa: E731
        for _ in range(100):
            call()
        return _hammer(call, timer.budget)
    finally:
        host.close()
