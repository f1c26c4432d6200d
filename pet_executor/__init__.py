"""pet_executor: the project's own Rust-style runtime (futures, wakers, tasks,
reactor) and the thread-hosted pet executor."""

from __future__ import annotations

__all__ = ()
