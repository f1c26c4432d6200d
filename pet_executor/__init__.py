"""pet_executor: the project's own Rust-style runtime, in pure Python.

Futures are inert until polled (``poll(cx) -> Poll``), a ``Waker`` says
when to poll again, cancelling is dropping (the task stops at its await and
its ``finally`` blocks run), and ``async def`` code runs on it through one
trap. See docs/pet_executor.md. ``PetExecutor``, the thread-hosted pet
executor that can host a run of any runtime, is imported on first use (it
belongs to the bridge layer; the runtime itself does not need it).
"""

from __future__ import annotations

from ._channel import Channel as Channel
from ._channel import ChannelClosed as ChannelClosed
from ._clock import Clock as Clock
from ._clock import MockClock as MockClock
from ._clock import MonotonicClock as MonotonicClock
from ._combinators import join as join
from ._combinators import select as select
from ._future import Context as Context
from ._future import Future as Future
from ._future import Poll as Poll
from ._future import Waker as Waker
from ._io import BusyResourceError as BusyResourceError
from ._io import accept as accept
from ._io import connect as connect
from ._io import listen as listen
from ._io import recv as recv
from ._io import sendall as sendall
from ._io import wait_readable as wait_readable
from ._io import wait_writable as wait_writable
from ._kernel import Cancelled as Cancelled
from ._kernel import CancelScope as CancelScope
from ._kernel import FutureBase as FutureBase
from ._kernel import JoinHandle as JoinHandle
from ._kernel import Task as Task
from ._kernel import current_task as current_task
from ._kernel import run as run
from ._kernel import shield as shield
from ._kernel import spawn as spawn
from ._sync import Event as Event
from ._sync import Lock as Lock
from ._sync import Semaphore as Semaphore
from ._time import now as now
from ._time import sleep as sleep
from ._time import sleep_until as sleep_until
from ._time import timeout as timeout
from ._time import timeout_at as timeout_at

__all__ = (
    "BusyResourceError",
    "PetExecutor",
    "CancelScope",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "Clock",
    "Context",
    "Event",
    "Future",
    "FutureBase",
    "JoinHandle",
    "Lock",
    "MockClock",
    "MonotonicClock",
    "Poll",
    "Semaphore",
    "Task",
    "Waker",
    "accept",
    "connect",
    "current_task",
    "join",
    "listen",
    "now",
    "recv",
    "run",
    "select",
    "sendall",
    "shield",
    "sleep",
    "sleep_until",
    "spawn",
    "timeout",
    "timeout_at",
    "wait_readable",
    "wait_writable",
)

# Public objects show their public path in tracebacks and docs.
for _name in __all__:
    if _name == "PetExecutor":  # lazy: see __getattr__
        continue
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("pet_executor._"):
        _obj.__module__ = "pet_executor"
del _name, _obj


def __getattr__(name: str) -> object:
    if name == "PetExecutor":
        from ._host import PetExecutor

        return PetExecutor
    raise AttributeError(f"module 'pet_executor' has no attribute {name!r}")
