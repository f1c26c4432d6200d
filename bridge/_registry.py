"""The runtime registry and the adapter interface.

The registry is a tuple of names, a cache dict and ``importlib``: the adapter
for runtime ``name`` is the class ``Adapter`` at the end of the module
``adapters._<name>``, imported the first time it is asked for. This module is
layer 1 (it imports no runtime); it finds the per-runtime modules by name, so
``import bridge`` never imports trio, curio, uvloop or greenlet.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import importlib
import importlib.util
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from ._errors import Fix, RuntimeUnavailableError

if TYPE_CHECKING:
    from ._context import Context, Token
    from ._work import WorkFuture

T = TypeVar("T")

__all__ = (
    "RUNTIMES",
    "RuntimeAdapter",
    "Runner",
    "adapter_if_imported",
    "available",
    "get",
    "unavailable_reason",
)

#: Every runtime the library knows, by its import (and sniffio) name.
RUNTIMES: tuple[str, ...] = ("asyncio", "trio", "curio", "pet_executor")

#: The extra that installs each optional runtime.
_EXTRAS: dict[str, str] = {"trio": "trio", "curio": "curio"}

#: Runtimes that only work on some Pythons: name -> (max version, reason).
_PYTHON_LIMITS: dict[str, tuple[tuple[int, int], str]] = {
    "curio": (
        (3, 11),
        "curio 1.6 (its last release) imports on Python 3.10 and 3.11 only",
    ),
}


class RuntimeAdapter(ABC):
    """What the library needs from one runtime; one subclass per runtime.

    Everything runtime-neutral (context snapshots, routing, cross-runtime
    calls) is built once on top of these primitives.
    """

    #: The runtime's import name, as sniffio spells it.
    name: ClassVar[str]
    #: The top-level module whose presence in ``sys.modules`` means the runtime
    #: may be running; detection skips the adapter until it is imported.
    module: ClassVar[str]

    @abstractmethod
    def version(self) -> str:
        """The installed version of the runtime's package."""

    @abstractmethod
    def detect_loop(self) -> Context | None:
        """The context if this thread is running this runtime's scheduler now
        (inside a task or a sync callback of it), else None. Must be cheap: it
        runs on every ``current_context()`` call on every thread."""

    @abstractmethod
    def detect_worker(self) -> Context | None:
        """The context if this thread is a worker of this runtime's own offload
        call (its owner's token where the owner can be known), else None."""

    @abstractmethod
    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        portals: bool = False,
        **options: Any,
    ) -> T:
        """Run ``async_fn(*args)`` as the main task of a new run on this thread,
        to completion, and return its result (the runtime's own ``run``).
        With ``portals``, every task of the run gets a greenlet portal."""

    def pet_options(self) -> dict[str, Any]:
        """Options a pet's run gets unless its creator gave them (a pet's
        thread serves other threads: the run may idle differently)."""
        return {}

    @abstractmethod
    def spawn_work(
        self,
        token: Token,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        future: WorkFuture[T],
    ) -> None:
        """On the thread of ``token``'s run (in a callback or task of it, or
        before a runner drives it): start ``work()`` as a task whose steps run
        in ``context``; call ``future.start(token, canceller)`` with a function
        that cancels the task (on the run's thread), and report the task's end
        through ``future.deliver_*`` on the run's thread."""

    @abstractmethod
    async def await_future(
        self,
        future: concurrent.futures.Future[T],
        *,
        abandon_on_cancel: bool = False,
        start: Callable[[], object] | None = None,
    ) -> T:
        """Await a ``concurrent.futures.Future`` in a task of this runtime. If
        the awaiting task is cancelled, ``future.cancel()`` is requested and
        the wait goes on until the future is done (its cleanup ran); then the
        task sees its own runtime's cancellation (trio: or the result, if the
        work finished anyway, with the cancellation at the next checkpoint).
        With ``abandon_on_cancel`` the task sees its cancellation at once.
        ``start()``, if given, is called once the task can be woken, just
        before it parks: it hands the work over (a worker that finishes at
        once finds the waiter in place, and nothing runs here after it)."""

    def enter_worker(self, token: Token) -> Callable[[], None]:
        """On a worker thread of ours about to run a job for ``token``'s run:
        let the runtime's own re-entry calls (``trio.from_thread.run``) find
        the owner. Returns the function that undoes it."""
        return _nothing

    @abstractmethod
    async def timeout(self, seconds: float, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` in a task of this runtime; after ``seconds``
        cancel it, let its cleanup run, and raise the builtin ``TimeoutError``."""

    @abstractmethod
    def cancel_exception(self) -> BaseException:
        """A new instance of the runtime's own cancellation exception."""

    def current_task_name(self) -> str | None:
        """The name of the task running this code, for messages (None if unknown)."""
        return None

    async def await_pet_future(self, future: Any) -> Any:
        """Await a pet_executor future (anything with ``poll(cx)``) in a task
        of this runtime: poll it with a waker that reschedules this task (on
        this thread directly, from other threads through the run's
        thread-safe call). Cancelling the task drops the future (its
        ``drop()``) and raises the runtime's own cancellation."""
        raise NotImplementedError(f"{self.name} tasks cannot await pet_executor futures")

    @abstractmethod
    def new_runner(self, **options: Any) -> Runner | None:
        """A run that this thread can drive again and again (a loop or kernel
        kept between calls, like ``asyncio.Runner``), or None when the runtime
        cannot resume a run (trio)."""

    @abstractmethod
    def token_for(self, native: Any) -> Token:
        """Our token for the runtime's own handle on a run (an asyncio loop, a
        ``TrioToken``, ...), as other libraries (anyio) hand them out."""


#: How a runner's call ended: ("value", result), ("error", exception),
#: ("cancelled", None), or ("pending", None) when its cleanup overran.
Outcome = tuple[Literal["value", "error", "cancelled", "pending"], Any]


class Runner(ABC):
    """A run of one runtime kept on one thread between calls."""

    @property
    @abstractmethod
    def token(self) -> Token:
        """The run's token; between two calls it refuses work
        (:class:`~bridge.RunFinishedError`), as the run is paused."""

    @abstractmethod
    def run(
        self,
        work: Callable[[], Awaitable[T]],
        context: contextvars.Context,
        deadline: float | None,
        cleanup_s: float,
    ) -> Outcome:
        """Run ``work()`` as a task of this run, its steps in ``context``,
        driving the loop on this thread until the task is done. At
        ``deadline`` (``time.monotonic()``) cancel the task and keep driving
        for up to ``cleanup_s`` more seconds while its cleanup runs. Tasks
        still pending when this returns stay pending until the next call."""

    def step_now(
        self, work: Callable[[], Awaitable[Any]], context: contextvars.Context
    ) -> Outcome | None:
        """Start ``work()`` as ``run`` would and take its first step here and
        now, without driving the loop, where the runner can. Returns the
        outcome if that step finished the work; otherwise None, and the next
        ``run`` (with the same arguments) goes on with the started task."""
        return None

    @abstractmethod
    def cancel_current(self) -> None:
        """From a signal handler on this thread, during ``run``: cancel the
        task ``run`` is driving (Ctrl-C), and wake the loop to notice."""

    @abstractmethod
    def close(self) -> None:
        """Cancel what is left, let its cleanup run, and release the loop."""


def _nothing() -> None:
    return None


_lock = threading.Lock()
_adapters: dict[str, RuntimeAdapter] = {}


def _unknown(name: str) -> LookupError:
    known = ", ".join(repr(n) for n in RUNTIMES)
    return LookupError(
        f"unknown runtime {name!r}; the known runtimes are {known} "
        f"(uvloop is runtime 'asyncio' with loop_factory=uvloop.new_event_loop)"
    )


def unavailable_reason(name: str) -> RuntimeUnavailableError | None:
    """Why runtime ``name`` cannot be used here, or None when it can.

    Cheap and import-free: it looks at the Python version and at what is
    installed, but does not import the runtime.
    """
    if name not in RUNTIMES:
        raise _unknown(name)
    limit = _PYTHON_LIMITS.get(name)
    here = sys.version_info[:2]
    if limit is not None and here > limit[0]:
        return RuntimeUnavailableError(
            f"runtime {name!r} is unavailable: {limit[1]}; this is Python {here[0]}.{here[1]}.",
            fixes=(
                Fix(
                    f'bridge.block_on(work, runtime="{name}")',
                    'bridge.block_on(work, runtime="asyncio")  # or run on Python 3.11',
                ),
            ),
        )
    extra = _EXTRAS.get(name)
    if extra is not None and importlib.util.find_spec(name) is None:
        return RuntimeUnavailableError(
            f"runtime {name!r} is not installed.",
            fixes=(Fix("pip install runtime-bridge", f"pip install 'runtime-bridge[{extra}]'"),),
        )
    return None


def available() -> tuple[str, ...]:
    """The runtimes usable in this process, in the registry's order."""
    return tuple(n for n in RUNTIMES if unavailable_reason(n) is None)


def get(name: str) -> RuntimeAdapter:
    """The adapter for runtime ``name``, importing it on first use.

    Raises ``LookupError`` for an unknown name and
    :class:`~bridge.RuntimeUnavailableError` for a runtime that is known but
    cannot be used here (not installed, or not on this Python).
    """
    try:
        return _adapters[name]
    except KeyError:
        pass
    error = unavailable_reason(name)
    if error is not None:
        raise error
    with _lock:
        if name not in _adapters:
            try:
                module = importlib.import_module(f"adapters._{name}")
            except ImportError as exc:
                raise RuntimeUnavailableError(
                    f"runtime {name!r} failed to import: {exc}.",
                    fixes=(
                        Fix(f"import {name}  # fails", f"pip install --force-reinstall {name}"),
                    ),
                ) from exc
            _adapters[name] = module.Adapter()
    return _adapters[name]


def adapter_if_imported(name: str) -> RuntimeAdapter | None:
    """The adapter of runtime ``name`` if its module is imported (so it may be
    running here), else None; never imports a runtime."""
    adapter = _adapters.get(name)
    if adapter is not None:
        return adapter
    if name not in sys.modules or unavailable_reason(name) is not None:
        return None
    try:
        return get(name)
    except Exception:  # a broken install or adapter: detection never raises
        return None
