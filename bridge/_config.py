"""Process-wide settings: ``bridge.configure``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from ._registry import RUNTIMES, get

__all__ = ("Policy", "configure", "settings")

Policy = Literal["strict", "offload"]


@dataclass
class _Settings:
    #: The runtime for block_on(runtime=None) where no worker owner decides.
    default_runtime: str = "asyncio"
    #: "strict": a blocking call on a loop thread without a portal raises
    #: BlockingInLoopError; "offload": it runs on the target runtime's pet
    #: while the loop thread blocks, under deadlock detection.
    policy: Policy = "strict"


settings = _Settings()
_lock = threading.Lock()


def configure(*, default_runtime: str | None = None, policy: Policy | None = None) -> None:
    """Set process-wide defaults. Unknown names raise at once (``LookupError``
    for an unknown runtime, ``ValueError`` for an unknown policy)."""
    with _lock:
        if default_runtime is not None:
            if default_runtime not in RUNTIMES:
                get(default_runtime)  # raises the LookupError that lists the runtimes
            settings.default_runtime = default_runtime
        if policy is not None:
            if policy not in ("strict", "offload"):
                raise ValueError(f"unknown policy {policy!r}; use 'strict' or 'offload'")
            settings.policy = policy
