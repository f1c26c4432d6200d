"""Where am I? The ``Context`` snapshot, tokens, and their detection.

Theory of operation. ``current_context()`` runs on every bridge call, so it is
built for speed:

1. Scheduler threads first. For each runtime whose module is imported, its
   adapter's ``detect_loop`` looks at the runtime's own per-thread state (the
   running asyncio loop, trio's run context, curio's kernel flag, our kernel)
   and returns a snapshot cached per run and per "in a task or not", so a loop
   thread pays a few attribute reads. trio is asked before asyncio because a
   trio guest run lives inside an asyncio loop.
2. Then worker threads: our own workers, trio's and anyio's (their thread-locals
   name the owner), curio's, and the default executor of an asyncio loop.
3. Otherwise the thread is plain.

A ``Token`` is a handle on one run that schedules a sync callback onto it from
any thread. Tokens of the same run compare equal, whichever thread made them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sniffio

from ._registry import adapter_if_imported

if TYPE_CHECKING:
    from ._work import WorkFuture

__all__ = (
    "PLAIN",
    "Context",
    "Role",
    "RunCache",
    "RunSnapshots",
    "Token",
    "current_context",
    "current_runtime",
    "mark_pet_thread",
    "mark_run_ending",
    "on_pet_thread",
    "seen_run",
)

Role = Literal["event_loop", "worker", "plain"]


class Token(ABC):
    """A handle on one run of a runtime: schedules callbacks onto it from any
    thread. Equal tokens name the same run."""

    __slots__ = ()

    #: The runtime's name, e.g. ``"trio"``.
    runtime: str

    @abstractmethod
    def run_sync_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` soon on the run's thread, from any thread.

        Raises :class:`~bridge.RunFinishedError` when the run is over or
        paused, instead of queueing work that would never run. ``fn`` runs as
        a sync callback of the run; an exception it raises is the run's to
        report (like ``loop.call_soon_threadsafe``), so callers catch their own.
        """

    @property
    @abstractmethod
    def native(self) -> object:
        """The runtime's own handle (loop, ``TrioToken``, kernel, ...)."""

    @property
    def thread_ident(self) -> int | None:
        """The thread that runs the run, where it has been seen."""
        return RUN_THREADS.get(self.native)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and self.native is other.native

    def __hash__(self) -> int:
        return id(self.native)

    def __repr__(self) -> str:
        return f"<{self.runtime} token for {self.native!r}>"


@dataclass(frozen=True, slots=True)
class Context:
    """A snapshot of what runs on the calling thread.

    - ``runtime``: the runtime's name, or None on a plain thread.
    - ``role``: ``"event_loop"`` (this thread is running that runtime's
      scheduler now), ``"worker"`` (a worker thread of an offload call, ours
      or the runtime's), or ``"plain"``.
    - ``hosted``: the loop is a pet executor's.
    - ``in_task``: code here runs inside a task (and may await), not in a
      sync callback of the loop.
    - ``portal``: a greenlet portal lets sync code here re-enter the loop.
    - ``guest``: the name of another runtime hosted on this thread (a trio
      guest run inside asyncio), or None.
    - ``token``: schedules onto the run from any thread; for a worker, its
      owner's run, or None when the owner cannot be known.
    - ``can_block``: blocking this thread stalls no event loop.
    """

    runtime: str | None
    role: Role
    hosted: bool = False
    in_task: bool = False
    portal: bool = False
    guest: str | None = None
    token: Token | None = None
    can_block: bool = True


PLAIN = Context(runtime=None, role="plain")


#: Each run's thread, recorded by the adapters when a run is first seen on its
#: own thread (keyed by the run's native handle; gone when the run is).
RUN_THREADS: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()


#: Runs whose end has begun: work cancelled now was cancelled by the run ending.
RUNS_ENDING: weakref.WeakSet[object] = weakref.WeakSet()


#: trio runs started with portals (their system tasks get portals from us).
PORTAL_RUNS: weakref.WeakSet[object] = weakref.WeakSet()


@contextlib.contextmanager
def owned_run(runtime: str) -> Iterator[None]:
    """Around a run the library owns on this thread: sniffio agrees with us
    there (also in loop callbacks, where its own guess fails)."""
    local = sniffio.thread_local
    previous, local.name = local.name, runtime
    try:
        yield
    finally:
        local.name = previous


def mark_run_ending(native: object) -> None:
    RUNS_ENDING.add(native)


def seen_run(native: object) -> None:
    """Record that ``native``'s run runs on this thread (adapters call it
    when they first see a run, on its thread)."""
    RUN_THREADS[native] = threading.get_ident()


class _PetThread(threading.local):
    flag = False


_pet_thread = _PetThread()


def mark_pet_thread() -> None:
    """Called by a pet on its own thread before its run starts: every loop
    this thread runs is hosted (adapters report ``hosted=True``)."""
    _pet_thread.flag = True


def in_portal() -> bool:
    """Whether code here runs in a task with a greenlet portal. A portal can
    exist only once bridge._portal is imported (lazily: it imports greenlet,
    which importing bridge must not)."""
    portal = sys.modules.get("bridge._portal")
    return portal is not None and portal.has_portal() is True


def on_pet_thread() -> bool:
    return _pet_thread.flag


# Detection order: our own runtime, then trio before asyncio (a trio guest run
# lives inside an asyncio loop), curio, and asyncio last.
_ORDER: tuple[str, ...] = ("pet_executor", "trio", "curio", "asyncio")

_Detector = Callable[[], "Context | None"]


class _Detectors:
    """The detection functions of the runtimes imported so far.

    Rebuilt when the number of imported modules changes (a cheap sign that a
    runtime may have been imported since), so a call pays no lookups for
    runtimes that cannot be running.
    """

    modules_seen = -1
    loops: tuple[_Detector, ...] = ()
    workers: tuple[_Detector, ...] = ()

    def refresh(self) -> None:
        modules = sys.modules
        self.modules_seen = len(modules)
        adapters = [a for n in _ORDER if n in modules and (a := adapter_if_imported(n)) is not None]
        workers: list[_Detector] = [_own_worker]
        workers += [a.detect_worker for a in adapters]
        if "anyio" in modules:
            workers.append(_anyio_worker)
        self.loops = tuple(a.detect_loop for a in adapters)
        self.workers = tuple(workers)


_detectors = _Detectors()


def current_context() -> Context:
    """Return a snapshot of what is running on this thread. Cheap: cached per
    run and per task kind; safe to call on every bridge call."""
    detectors = _detectors
    if len(sys.modules) != detectors.modules_seen:
        detectors.refresh()
    for detect in detectors.loops:
        ctx = detect()
        if ctx is not None:
            return ctx
    for detect in detectors.workers:
        ctx = detect()
        if ctx is not None:
            return ctx
    return PLAIN


class _OwnWorker(threading.local):
    # Set while a spawn_blocking worker of ours runs a job.
    ctx: Context | None = None
    job: WorkFuture[Any] | None = None


_own = _OwnWorker()


def _own_worker() -> Context | None:
    return _own.ctx


def set_own_worker(ctx: Context | None, job: WorkFuture[Any] | None) -> None:
    """Mark this thread as our worker for ``ctx``'s owner, running ``job``
    (None, None: the job is over)."""
    _own.ctx, _own.job = ctx, job


def own_worker_job() -> WorkFuture[Any] | None:
    """The job this thread runs as our worker, or None."""
    return _own.job


def current_runtime() -> str | None:
    """The name of the runtime this thread runs or works for, or None."""
    return current_context().runtime


def _anyio_worker() -> Context | None:
    # anyio's worker threads record their owner in a thread-local (anyio 4):
    # an EventLoopToken whose backend names the runtime.
    # A threading.local's __dict__ is this thread's: no AttributeError cost.
    token = getattr(_anyio_threadlocals(), "__dict__", {}).get("current_token")
    if token is None:
        return None
    name = token.backend_class.__name__.removesuffix("Backend").lower()
    adapter = adapter_if_imported(name)
    if adapter is None:  # pragma: no cover - anyio running a runtime we lack
        return None
    return worker_context(adapter.name, adapter.token_for(token.native_token))


def anyio_enter_worker(runtime: str | None, token: Token) -> Callable[[], None]:
    """On a worker thread of ours: let ``anyio.from_thread.run`` find the owner
    (as anyio's own workers do). Returns the function that undoes it."""
    if "anyio" not in sys.modules or runtime not in ("asyncio", "trio"):
        return _nothing
    from anyio._core._eventloop import claim_worker_thread, get_async_backend

    claim = claim_worker_thread(get_async_backend(runtime), token.native)
    claim.__enter__()

    def leave() -> None:
        claim.__exit__(None, None, None)

    return leave


def _nothing() -> None:
    return None


@functools.cache
def _anyio_threadlocals() -> object:
    try:
        from anyio._core._eventloop import threadlocals
    except ImportError:  # pragma: no cover - an anyio without it
        return None
    return threadlocals


class RunSnapshots:
    """The snapshots of one run as seen on its own thread: in a task (with or
    without a portal) and in a sync callback of the loop. Made once per run
    and thread; the run is held weakly (a cache must not keep it alive)."""

    __slots__ = ("in_callback", "in_task", "in_task_portal", "run")

    def __init__(self, run: object, token: Token) -> None:
        seen_run(token.native)
        common: dict[str, Any] = {
            "runtime": token.runtime,
            "role": "event_loop",
            "hosted": on_pet_thread(),
            "token": token,
            "can_block": False,
        }
        self.in_task = Context(in_task=True, **common)
        self.in_task_portal = Context(in_task=True, portal=True, **common)
        self.in_callback = Context(in_task=False, **common)
        self.run = weakref.ref(run)

    def task(self) -> Context:
        """The snapshot for code running in a task."""
        return self.in_task_portal if in_portal() else self.in_task


class RunCache(threading.local):
    """Per thread: the run last seen here, and its snapshots."""

    snapshots: RunSnapshots | None = None

    def get(self, run: object) -> RunSnapshots | None:
        snapshots = self.snapshots
        return snapshots if snapshots is not None and snapshots.run() is run else None

    def store(self, run: object, token: Token) -> RunSnapshots:
        snapshots = self.snapshots = RunSnapshots(run, token)
        return snapshots


def worker_context(runtime: str, token: Token | None) -> Context:
    """The snapshot of a worker thread of ``runtime`` owned by ``token``'s run
    (None: the owner cannot be known)."""
    return Context(runtime=runtime, role="worker", token=token)
