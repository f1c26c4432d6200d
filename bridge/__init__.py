"""runtime-bridge: sync and async code calling each other safely, across
asyncio (and uvloop), trio, curio and pet_executor."""

from __future__ import annotations

from ._block_on import block_on as block_on
from ._config import configure as configure
from ._context import Context as Context
from ._context import Token as Token
from ._context import current_context as current_context
from ._context import current_runtime as current_runtime
from ._errors import BlockingInLoopError as BlockingInLoopError
from ._errors import BridgeError as BridgeError
from ._errors import ContextPanic as ContextPanic
from ._errors import DeadlockError as DeadlockError
from ._errors import GuestCancelledError as GuestCancelledError
from ._errors import NestedRuntimeError as NestedRuntimeError
from ._errors import NoRuntimeError as NoRuntimeError
from ._errors import PetClosedError as PetClosedError
from ._errors import RunFinishedError as RunFinishedError
from ._errors import RuntimeUnavailableError as RuntimeUnavailableError
from ._errors import WrongRuntimeError as WrongRuntimeError
from ._pets import pet as pet
from ._run import ensure_portal as ensure_portal
from ._run import run as run
from ._runners import close_thread_runners as close_thread_runners
from ._spawn_blocking import CapacityLimiter as CapacityLimiter
from ._spawn_blocking import check_cancelled as check_cancelled
from ._spawn_blocking import spawn_blocking as spawn_blocking

__all__ = (
    "BlockingInLoopError",
    "BridgeError",
    "CapacityLimiter",
    "Context",
    "ContextPanic",
    "DeadlockError",
    "GuestCancelledError",
    "NestedRuntimeError",
    "NoRuntimeError",
    "PetClosedError",
    "RunFinishedError",
    "RuntimeUnavailableError",
    "Token",
    "WrongRuntimeError",
    "block_on",
    "check_cancelled",
    "close_thread_runners",
    "configure",
    "current_context",
    "current_runtime",
    "ensure_portal",
    "pet",
    "run",
    "spawn_blocking",
)

# Public objects show their public path in tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("bridge._"):
        _obj.__module__ = "bridge"
del _name, _obj
