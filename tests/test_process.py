"""Exit, Ctrl-C and fork, each in a subprocess that gets the real thing."""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.child_process import Child


def test_exit_while_a_non_daemon_thread_is_blocked_in_pet_call() -> None:
    child = Child(
        """
        import asyncio, threading, bridge
        from pet_executor._host import PetExecutor
        pet = PetExecutor("asyncio")
        started = threading.Event()
        async def forever():
            try:
                print("started", flush=True)
                started.set()
                await asyncio.sleep(3600)
            finally:
                print("cleanup ran", flush=True)
        def caller():
            try:
                pet.call(forever)
            except bridge.PetClosedError:
                print("caller got PetClosedError", flush=True)
        threading.Thread(target=caller).start()   # not a daemon
        started.wait()
        """
    )
    start = time.monotonic()
    code, err = child.finish(timeout=30)
    assert code == 0, err
    assert child.lines == ["started", "cleanup ran", "caller got PetClosedError"]
    assert time.monotonic() - start < 15, "the interpreter exited promptly"


CTRL_C_PROGRAM = """
    import asyncio, signal, bridge
    from pet_executor._host import PetExecutor

    async def forever():
        try:
            print("started", flush=True)
            await asyncio.sleep(3600)
        finally:
            print("cleanup ran", flush=True)

    try:
        CALL
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    restored = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    print("handler restored", restored, flush=True)

    async def main():
        print("asyncio.run waiting", flush=True)
        await asyncio.sleep(3600)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("asyncio.run handled Ctrl-C", flush=True)
"""


@pytest.mark.parametrize(
    "call",
    [
        "bridge.block_on(forever)",
        'PetExecutor("asyncio").call(forever)',
        'bridge.block_on(forever, runtime="curio")',
    ],
    ids=["block_on", "pet.call", "block_on-curio"],
)
def test_ctrl_c_cancels_the_work_and_raises_keyboard_interrupt(call: str) -> None:
    if "curio" in call and sys.version_info >= (3, 12):
        pytest.skip("curio 1.6 imports on Python 3.10 and 3.11 only")
    program = CTRL_C_PROGRAM.replace("CALL", call)
    if "curio" in call:
        program = program.replace(
            "await asyncio.sleep(3600)\n        finally", "await curio.sleep(3600)\n        finally"
        )
        program = program.replace("import asyncio,", "import asyncio, curio,")
    child = Child(program)
    child.expect("started")
    child.interrupt()
    child.expect("handler restored True")
    child.expect("asyncio.run waiting")
    child.interrupt()
    code, err = child.finish()
    assert child.lines == [
        "started",
        "cleanup ran",
        "KeyboardInterrupt",
        "handler restored True",
        "asyncio.run waiting",
        "asyncio.run handled Ctrl-C",
    ], err
    assert code == 0, err


def test_ctrl_c_during_the_works_first_step_cancels_it_at_its_await() -> None:
    """A Ctrl-C that lands while block_on takes the work's first step (before
    the work first suspends) is block_on's: the step goes on, the work is
    cancelled at its await, its cleanup runs, KeyboardInterrupt follows, and
    the thread's runner still works."""
    child = Child(
        """
        import asyncio, signal, bridge

        async def forever():
            signal.raise_signal(signal.SIGINT)
            print("the first step went on", flush=True)
            try:
                await asyncio.sleep(3600)
            finally:
                print("cleanup ran", flush=True)

        async def answer():
            await asyncio.sleep(0)
            return 42

        try:
            bridge.block_on(forever)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        print("next call", bridge.block_on(answer), flush=True)
        """
    )
    code, err = child.finish()
    assert child.lines == [
        "the first step went on",
        "cleanup ran",
        "KeyboardInterrupt",
        "next call 42",
    ], err
    assert code == 0, err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_child_drops_inherited_pets_and_both_keep_working() -> None:
    child = Child(
        """
        import asyncio, os, time, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        import bridge
        pet = bridge.pet("asyncio")
        async def pid():
            return os.getpid()
        async def slow():
            await asyncio.sleep(0.3)
            return "parent's slow call"
        assert pet.call(pid) == os.getpid()
        pending = pet.submit(slow)
        child = os.fork()
        if child == 0:
            try:
                pending.result(5)
            except bridge.PetClosedError:
                print("child: inherited call failed with PetClosedError", flush=True)
            me = os.getpid()
            print("child: shared pet works", bridge.pet("asyncio").call(pid) == me, flush=True)
            print("child: block_on works", bridge.block_on(pid) == me, flush=True)
            os._exit(0)
        start = time.monotonic()
        print("parent:", pending.result(5), flush=True)
        for _ in range(50):
            assert pet.call(pid) == os.getpid()
        in_time = time.monotonic() - start < 5
        print("parent: 50 calls in", "time" if in_time else "too long", flush=True)
        os.waitpid(child, 0)
        """
    )
    code, err = child.finish(timeout=30)
    assert code == 0, err
    assert sorted(child.lines) == sorted(
        [
            "child: inherited call failed with PetClosedError",
            "child: shared pet works True",
            "child: block_on works True",
            "parent: parent's slow call",
            "parent: 50 calls in time",
        ]
    ), err
