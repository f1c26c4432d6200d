"""The process-wide shared pets: ``bridge.pet(runtime, **options)``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pet_executor._host import PetExecutor

__all__ = ("pet",)

_lock = threading.Lock()
_shared: dict[tuple[str, frozenset[tuple[str, Any]]], PetExecutor] = {}


def pet(runtime: str = "asyncio", **runtime_options: Any) -> PetExecutor:
    """The shared pet of ``runtime`` with these options, made (or re-made,
    after a close) on demand. A uvloop pet:
    ``bridge.pet("asyncio", loop_factory=uvloop.new_event_loop)``."""
    from pet_executor._host import PetExecutor

    key = (runtime, frozenset(runtime_options.items()))
    with _lock:
        shared = _shared.get(key)
        if shared is None or shared.closed:
            shared = _shared[key] = PetExecutor(
                runtime, name=f"pet-{runtime}-shared", **runtime_options
            )
        return shared
