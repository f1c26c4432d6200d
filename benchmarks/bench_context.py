"""Where am I? ``bridge.current_context()`` against sniffio and the runtimes' own calls.

Every bridge call asks ``current_context()`` first, so it must cost about what
the cheapest "am I in a loop?" call does. Loop-thread rows run inside a task;
plain-thread rows run on a thread with no loop, where sniffio and
``asyncio.get_running_loop()`` raise: those rows time the call and the
``except``, which is what a caller pays to learn "no loop here".
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import Group

context = Group(
    "context",
    "where am I? bridge.current_context() against sniffio and asyncio.get_running_loop()",
)

#: issue 2: every bridge call makes it, so on a loop thread it must stay small.
LOOP_GOAL = "<= 2 µs"


def _current_context() -> Callable[[], object]:
    import bridge

    return bridge.current_context


def _sniffio() -> Callable[[], object]:
    import sniffio

    return sniffio.current_async_library


# --- on a loop thread, inside a task ----------------------------------------


@context.case(
    "current_context()  [asyncio task]",
    inside="asyncio",
    goal=LOOP_GOAL,
    vs=("sniffio_asyncio", "loop_asyncio"),
)
def ctx_asyncio() -> Callable[[], object]:
    return _current_context()


@context.case("sniffio.current_async_library()  [asyncio task]", inside="asyncio")
def sniffio_asyncio() -> Callable[[], object]:
    return _sniffio()


@context.case("asyncio.get_running_loop()  [asyncio task]", inside="asyncio")
def loop_asyncio() -> Callable[[], object]:
    import asyncio

    return asyncio.get_running_loop


@context.case(
    "current_context()  [uvloop task]",
    inside="uvloop",
    goal=LOOP_GOAL,
    vs=("sniffio_uvloop", "loop_uvloop"),
)
def ctx_uvloop() -> Callable[[], object]:
    return _current_context()


@context.case("sniffio.current_async_library()  [uvloop task]", inside="uvloop")
def sniffio_uvloop() -> Callable[[], object]:
    return _sniffio()


@context.case("asyncio.get_running_loop()  [uvloop task]", inside="uvloop")
def loop_uvloop() -> Callable[[], object]:
    import asyncio

    return asyncio.get_running_loop


@context.case(
    "current_context()  [trio task]",
    inside="trio",
    goal=LOOP_GOAL,
    vs=("sniffio_trio", "token_trio"),
)
def ctx_trio() -> Callable[[], object]:
    return _current_context()


@context.case("sniffio.current_async_library()  [trio task]", inside="trio")
def sniffio_trio() -> Callable[[], object]:
    return _sniffio()


@context.case("trio.lowlevel.current_trio_token()  [trio task]", inside="trio")
def token_trio() -> Callable[[], object]:
    import trio

    return trio.lowlevel.current_trio_token


@context.case(
    "current_context()  [curio task]",
    inside="curio",
    goal=LOOP_GOAL,
    vs=("sniffio_curio", "running_curio"),
)
def ctx_curio() -> Callable[[], object]:
    return _current_context()


@context.case("sniffio.current_async_library()  [curio task]", inside="curio")
def sniffio_curio() -> Callable[[], object]:
    return _sniffio()


@context.case("curio.meta.curio_running()  [curio task]", inside="curio")
def running_curio() -> Callable[[], object]:
    import curio.meta

    return curio.meta.curio_running  # type: ignore[no-any-return]


@context.case(
    "current_context()  [pet_executor task]",
    inside="pet_executor",
    goal=LOOP_GOAL,
    vs=("kernel_pet",),
)
def ctx_pet() -> Callable[[], object]:
    return _current_context()


@context.case("pet_executor.lowlevel.current_kernel()  [pet_executor task]", inside="pet_executor")
def kernel_pet() -> Callable[[], object]:
    from pet_executor.lowlevel import current_kernel

    return current_kernel


# --- on a plain thread (no loop): the peers raise, callers catch -------------
# asyncio is imported in all three rows, as in most programs; the bridge
# consults only the runtimes that are imported.


@context.case("current_context()  [plain thread]", vs=("sniffio_plain", "loop_plain"))
def ctx_plain() -> Callable[[], object]:
    import asyncio  # noqa: F401 - imported in the peers' rows too

    import bridge

    current_context = bridge.current_context

    def call() -> None:
        current_context()

    return call


@context.case("sniffio.current_async_library() raises, caught  [plain thread]")
def sniffio_plain() -> Callable[[], object]:
    import asyncio  # noqa: F401 - imported in the other plain rows too

    import sniffio

    current_async_library = sniffio.current_async_library
    not_found = sniffio.AsyncLibraryNotFoundError

    def call() -> None:
        try:  # noqa: SIM105 - what callers write; contextlib.suppress costs more
            current_async_library()
        except not_found:
            pass

    return call


@context.case("asyncio.get_running_loop() raises, caught  [plain thread]")
def loop_plain() -> Callable[[], object]:
    import asyncio

    get_running_loop = asyncio.get_running_loop

    def call() -> None:
        try:  # noqa: SIM105 - what callers write; contextlib.suppress costs more
            get_running_loop()
        except RuntimeError:
            pass

    return call


@context.case(
    "current_context()  [plain thread; every runtime imported]",
    vs="sniffio_plain_all",
    requires=("trio", "anyio"),
)
def ctx_plain_all() -> Callable[[], object]:
    _import_every_runtime()
    return ctx_plain()


@context.case(
    "sniffio.current_async_library() raises, caught  [same imports]",
    requires=("trio", "anyio"),
)
def sniffio_plain_all() -> Callable[[], object]:
    _import_every_runtime()
    return sniffio_plain()


def _import_every_runtime() -> None:
    # Every adapter the bridge may consult is imported (curio only where it can be).
    import importlib
    import sys

    names = ["trio", "anyio"] + (["curio"] if sys.version_info < (3, 12) else [])
    for name in names:
        importlib.import_module(name)


# --- the harness's own floor --------------------------------------------------


@context.case("a call to an empty function  [the harness's floor]")
def empty_call() -> Callable[[], object]:
    def call() -> None:
        pass

    return call
