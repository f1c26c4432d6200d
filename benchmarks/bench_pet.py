"""pet_executor, the project's own runtime, against the peers: issue 3's "Benchmarks".

Five groups, each row compared with its peers measured in the same run:

- ``pe_switch``: a task switch, ``await sleep(0)`` in a loop, per switch,
  against asyncio, trio and curio;
- ``pe_spawn``: spawn 10,000 tasks and join them all, against
  ``asyncio.gather``, a trio nursery and a curio ``TaskGroup``;
- ``pe_channel``: a ping-pong between two tasks over a pair of channels of
  capacity 1, per round trip, against ``asyncio.Queue(1)`` pairs and trio
  memory channels;
- ``pe_wake``: a cross-thread wake round trip (another thread sets an event,
  the woken task answers by handing it the next one through a
  ``queue.SimpleQueue``), with no I/O registered, against a SimpleQueue
  ping-pong between two threads (the floor) and the same round trip through
  asyncio's ``call_soon_threadsafe``; and again with a socket registered;
- ``pe_tcp``: a 64-byte TCP echo round trip on 127.0.0.1 (client and server
  tasks in the same run, one connection per round), against asyncio streams
  and trio.

Rows that set something up (a thread, a server, a connection) take the
round's ``Timer`` and time inside a ``try``/``finally`` that tears it down,
so every thread is joined and every socket closed before the round ends.
The thread rows (``pe_wake``) pin their worker to one CPU (``one_cpu``, see
``benchmarks/_pin.py``); the others are single-threaded.

The bodies follow the runtime author's reference implementations (issue 3),
cut into calls the harness can time: a call is ``SWITCHES`` switches,
``PINGS`` channel round trips, ``WAKES`` wakes or ``ECHOES`` echo round
trips (``ops=``), so each row reports one operation.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks import Group, Timer
from benchmarks._pin import one_cpu

#: Operations per timed call (``ops=``): enough to make the harness's own
#: per-call await negligible, few enough for many samples per round.
SWITCHES = 1000
PINGS = 200
WAKES = 50
ECHOES = 100

#: issue 3: "Spawn and join of 10,000 tasks".
TASKS = 10_000

#: issue 3: TCP echo of 64-byte messages.
MESSAGE = b"x" * 64

AsyncFn = Callable[[], Coroutine[Any, Any, None]]


async def child() -> int:
    return 1


# =============================================================================
# 1. Task switch: await sleep(0)
# =============================================================================

switch = Group(
    "pe_switch",
    "pet_executor task switch: await sleep(0) in a loop, per switch, "
    "against asyncio, trio and curio",
)


def _switches(sleep: Callable[[int], Any]) -> AsyncFn:
    rounds = range(SWITCHES)

    async def switches() -> None:
        for _ in rounds:
            await sleep(0)

    return switches


@switch.case(
    "await pe.sleep(0)  [pet_executor]",
    inside="pet_executor",
    ops=SWITCHES,
    goal=(
        "<= 1.0x asyncio_switch",
        ">= 1x faster than trio_switch",
        ">= 1x faster than curio_switch",
    ),
)
def pe_switch() -> AsyncFn:
    import pet_executor as pe

    return _switches(pe.sleep)


@switch.case("await asyncio.sleep(0)  [asyncio]", inside="asyncio", ops=SWITCHES)
def asyncio_switch() -> AsyncFn:
    import asyncio

    return _switches(asyncio.sleep)


@switch.case("await trio.sleep(0)  [trio]", inside="trio", ops=SWITCHES)
def trio_switch() -> AsyncFn:
    import trio

    return _switches(trio.sleep)


@switch.case("await curio.sleep(0)  [curio]", inside="curio", ops=SWITCHES)
def curio_switch() -> AsyncFn:
    import curio

    return _switches(curio.sleep)


# =============================================================================
# 2. Spawn and join 10,000 tasks
# =============================================================================

spawn = Group(
    "pe_spawn",
    f"pet_executor spawn + join of {TASKS:,} tasks (time per {TASKS:,}), "
    "against asyncio.gather, a trio nursery and a curio TaskGroup",
)


@spawn.case(
    f"{TASKS:,} x pe.spawn(child), then await each handle  [pet_executor]",
    inside="pet_executor",
    goal=(
        ">= 1x faster than trio_nursery",
        ">= 1x faster than curio_taskgroup",
        "<= 1.5x asyncio_gather",
    ),
)
def pe_spawn_join() -> AsyncFn:
    import pet_executor as pe

    spawn, tasks = pe.spawn, range(TASKS)

    async def spawn_join() -> None:
        handles = [spawn(child) for _ in tasks]
        for handle in handles:
            await handle

    return spawn_join


@spawn.case(f"await asyncio.gather(*{TASKS:,} x child())  [asyncio]", inside="asyncio")
def asyncio_gather() -> AsyncFn:
    import asyncio

    gather, tasks = asyncio.gather, range(TASKS)

    async def spawn_join() -> None:
        await gather(*[child() for _ in tasks])

    return spawn_join


@spawn.case(f"{TASKS:,} x nursery.start_soon(child) in a nursery  [trio]", inside="trio")
def trio_nursery() -> AsyncFn:
    import trio

    open_nursery, tasks = trio.open_nursery, range(TASKS)

    async def spawn_join() -> None:
        async with open_nursery() as nursery:
            for _ in tasks:
                nursery.start_soon(child)

    return spawn_join


@spawn.case(f"{TASKS:,} x await group.spawn(child) in a TaskGroup  [curio]", inside="curio")
def curio_taskgroup() -> AsyncFn:
    import curio

    task_group, tasks = curio.TaskGroup, range(TASKS)

    async def spawn_join() -> None:
        async with task_group() as group:
            for _ in tasks:
                await group.spawn(child)

    return spawn_join


# =============================================================================
# 3. Channel ping-pong between two tasks
# =============================================================================

channel = Group(
    "pe_channel",
    "pet_executor channel ping-pong between two tasks (capacity 1 each way), per round trip, "
    "against asyncio.Queue(1) pairs and trio memory channels",
)


@channel.case(
    "pe.Channel(1) there and back  [pet_executor]",
    inside="pet_executor",
    ops=PINGS,
    vs=("asyncio_queue", "trio_channel"),
)
def pe_ping_pong() -> AsyncFn:
    import pet_executor as pe

    pings = range(PINGS)

    async def ping_pong() -> None:
        there: pe.Channel[int] = pe.Channel(1)
        back: pe.Channel[int] = pe.Channel(1)

        async def echo() -> None:
            for _ in pings:
                await back.send(await there.receive())

        handle = pe.spawn(echo)
        for i in pings:
            await there.send(i)
            await back.receive()
        await handle

    return ping_pong


@channel.case("asyncio.Queue(1) there and back  [asyncio]", inside="asyncio", ops=PINGS)
def asyncio_queue() -> AsyncFn:
    import asyncio

    pings = range(PINGS)

    async def ping_pong() -> None:
        there: asyncio.Queue[int] = asyncio.Queue(1)
        back: asyncio.Queue[int] = asyncio.Queue(1)

        async def echo() -> None:
            for _ in pings:
                await back.put(await there.get())

        task = asyncio.create_task(echo())
        for i in pings:
            await there.put(i)
            await back.get()
        await task

    return ping_pong


@channel.case("trio.open_memory_channel(1) there and back  [trio]", inside="trio", ops=PINGS)
def trio_channel() -> AsyncFn:
    import trio

    pings = range(PINGS)

    async def ping_pong() -> None:
        there_send, there_receive = trio.open_memory_channel(1)
        back_send, back_receive = trio.open_memory_channel(1)

        async def echo() -> None:
            for _ in pings:
                await back_send.send(await there_receive.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for i in pings:
                await there_send.send(i)
                await back_receive.receive()

    return ping_pong


# =============================================================================
# 4. Cross-thread wake round trip
# =============================================================================

wake = Group(
    "pe_wake",
    "pet_executor cross-thread wake round trip: another thread sets an event, the woken task "
    "hands it the next one; against the SimpleQueue thread floor and call_soon_threadsafe",
)


def _setter(
    to_thread: queue.SimpleQueue[Any], wake_one: Callable[[Any], object]
) -> threading.Thread:
    """A thread that calls ``wake_one(item)`` for each item it gets, until None."""

    def other() -> None:
        get = to_thread.get
        while (item := get()) is not None:
            wake_one(item)

    thread = threading.Thread(target=other, name="bench-waker", daemon=True)
    thread.start()
    return thread


@wake.case("SimpleQueue ping-pong floor: put to a thread, get its answer", ops=WAKES)
def queue_floor(timer: Timer) -> None:
    one_cpu()
    there: queue.SimpleQueue[Any] = queue.SimpleQueue()
    back: queue.SimpleQueue[Any] = queue.SimpleQueue()
    thread = _setter(there, back.put)
    put, get, wakes = there.put, back.get, range(WAKES)

    def ping_pong() -> None:
        for i in wakes:
            put(i)
            get()

    try:
        timer.time(ping_pong)
    finally:
        put(None)
        thread.join()


async def _pe_wake(timer: Timer) -> None:
    import pet_executor as pe

    to_thread: queue.SimpleQueue[Any] = queue.SimpleQueue()
    thread = _setter(to_thread, pe.Event.set)
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


@wake.case(
    "thread sets pe.Event, task answers  [pet_executor, no I/O registered]",
    inside="pet_executor",
    ops=WAKES,
    goal=("<= 1.3x queue_floor", ">= 2x faster than asyncio_wake"),
)
async def pe_wake(timer: Timer) -> None:
    one_cpu()
    await _pe_wake(timer)


@wake.case(
    "thread sets pe.Event, task answers  [pet_executor, a socket registered]",
    inside="pet_executor",
    ops=WAKES,
    vs=("queue_floor", "pe_wake", "asyncio_wake"),
)
async def pe_wake_socket(timer: Timer) -> None:
    one_cpu()
    import socket

    import pet_executor as pe

    a, b = socket.socketpair()
    try:
        watcher = pe.spawn(pe.wait_readable, b)  # never readable: a stays silent
        await pe.sleep(0)  # the watcher registers b with the reactor
        try:
            await _pe_wake(timer)
        finally:
            watcher.abort()
            with contextlib.suppress(pe.Cancelled):
                await watcher
    finally:
        a.close()
        b.close()


@wake.case(
    "thread: loop.call_soon_threadsafe(fut.set_result), task answers  [asyncio]",
    inside="asyncio",
    ops=WAKES,
)
async def asyncio_wake(timer: Timer) -> None:
    one_cpu()
    await asyncio_wake_round_trips(timer, WAKES)


async def asyncio_wake_round_trips(timer: Timer, count: int) -> None:
    """Time ``count`` wakes of this task by another thread, through
    ``call_soon_threadsafe`` (also the adapters benchmarks' asyncio floor)."""
    import asyncio

    loop = asyncio.get_running_loop()
    call_soon_threadsafe = loop.call_soon_threadsafe
    to_thread: queue.SimpleQueue[Any] = queue.SimpleQueue()
    thread = _setter(to_thread, lambda fut: call_soon_threadsafe(fut.set_result, None))
    put, new_future, wakes = to_thread.put, loop.create_future, range(count)

    async def round_trips() -> None:
        for _ in wakes:
            future = new_future()
            put(future)
            await future

    try:
        await timer.time_async(round_trips)
    finally:
        put(None)
        thread.join()


# =============================================================================
# 5. TCP echo on loopback
# =============================================================================

#: Seconds per round: one connection per round, on which pet_executor makes
#: ~25,000 round trips and trio (the slowest) 7,000 to 11,000; over the rounds each row
#: makes several times issue 3's "10,000 round trips".
TCP_BUDGET_S = 0.5

tcp = Group(
    "pe_tcp",
    f"pet_executor TCP echo of {len(MESSAGE)} bytes on 127.0.0.1, per round trip "
    "(client and server tasks in one run), against asyncio streams and trio",
    budget=TCP_BUDGET_S,
)


@tcp.case(
    "pe.sendall + pe.recv to a pe echo task  [pet_executor]",
    inside="pet_executor",
    ops=ECHOES,
    vs=("asyncio_tcp", "trio_tcp"),
)
async def pe_tcp(timer: Timer) -> None:
    import socket

    import pet_executor as pe

    recv, sendall, echoes, size = pe.recv, pe.sendall, range(ECHOES), len(MESSAGE)

    async def echo(conn: socket.socket) -> None:
        with conn:
            while data := await recv(conn, 65536):
                await sendall(conn, data)

    with pe.listen(("127.0.0.1", 0)) as listener:

        async def serve() -> None:
            conn, _ = await pe.accept(listener)
            await echo(conn)

        server = pe.spawn(serve)
        with await pe.connect(listener.getsockname()) as client:

            async def round_trips() -> None:
                for _ in echoes:
                    await sendall(client, MESSAGE)
                    got = 0
                    while got < size:
                        got += len(await recv(client, 65536))

            try:
                await timer.time_async(round_trips)
            finally:
                client.shutdown(socket.SHUT_WR)  # the echo task sees EOF and ends
                await server


@tcp.case(
    "writer.write + drain + reader.readexactly, start_server echo  [asyncio streams]",
    inside="asyncio",
    ops=ECHOES,
)
async def asyncio_tcp(timer: Timer) -> None:
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        write, drain, readexactly = writer.write, writer.drain, reader.readexactly
        echoes, size = range(ECHOES), len(MESSAGE)

        async def round_trips() -> None:
            for _ in echoes:
                write(MESSAGE)
                await drain()
                await readexactly(size)

        try:
            await timer.time_async(round_trips)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


@tcp.case(
    "stream.send_all + receive_some, serve_tcp echo  [trio]",
    inside="trio",
    ops=ECHOES,
)
async def trio_tcp(timer: Timer) -> None:
    from functools import partial

    import trio

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        try:
            async with await trio.open_tcp_stream("127.0.0.1", port) as client:
                send_all, receive_some = client.send_all, client.receive_some
                echoes, size = range(ECHOES), len(MESSAGE)

                async def round_trips() -> None:
                    for _ in echoes:
                        await send_all(MESSAGE)
                        got = 0
                        while got < size:
                            got += len(await receive_some(65536))

                await timer.time_async(round_trips)
        finally:
            nursery.cancel_scope.cancel()  # stops serve_tcp and its handlers
