"""The runtime variants a test runs on, and the host x guest pairings.

A variant is a runtime plus a loop option: ``asyncio+uvloop`` is runtime
``asyncio`` with ``loop_factory=uvloop.new_event_loop``. Variants and pairs
are singletons, so pytest (which caches a parametrised fixture by the
identity of its parameter) sees the same object in every test.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._registry import unavailable_reason

if TYPE_CHECKING:
    from pet_executor._host import PetExecutor

T = TypeVar("T")

__all__ = ("PAIRS", "VARIANTS", "BridgePair", "Variant", "variant")


@dataclass(frozen=True, eq=False)
class Variant:
    """One runtime variant: ``name`` is the test id, ``runtime`` the
    runtime's import name, ``loop`` the name of a loop option (or None)."""

    name: str
    runtime: str
    loop: str | None = None

    def __repr__(self) -> str:
        return f"<bridge variant {self.name}>"

    def unavailable_reason(self) -> str | None:
        """Why this variant cannot run here (import-free), or None."""
        error = unavailable_reason(self.runtime)
        if error is not None:
            return error.what
        if self.loop == "uvloop":
            if sys.platform == "win32":
                return "uvloop does not support Windows"
            if importlib.util.find_spec("uvloop") is None:
                return "uvloop is not installed (pip install 'runtime-bridge[uvloop]')"
        return None

    def options(self) -> dict[str, Any]:
        """The options that make a run (or a pet) of this variant."""
        if self.loop == "uvloop":
            import uvloop

            return {"loop_factory": uvloop.new_event_loop}
        return {}


VARIANTS: tuple[Variant, ...] = (
    Variant("asyncio", "asyncio"),
    Variant("asyncio+uvloop", "asyncio", "uvloop"),
    Variant("trio", "trio"),
    Variant("curio", "curio"),
    Variant("pet_executor", "pet_executor"),
)
_BY_NAME = {v.name: v for v in VARIANTS}


def variant(name: str) -> Variant:
    """The variant called ``name``; a ``LookupError`` naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(repr(v.name) for v in VARIANTS)
        raise LookupError(f"unknown runtime variant {name!r}; the known ones are {known}") from None


@dataclass(frozen=True, eq=False)
class BridgePair:
    """The host and guest of a pairing test (the ``bridge_pair`` fixture).

    The test runs on ``host``; ``await pair.call(async_fn, *args)`` runs
    ``async_fn`` on ``guest`` through :func:`adapters.call`.
    """

    host: str
    guest: str

    @property
    def id(self) -> str:
        return f"{self.host}->{self.guest}"

    def __repr__(self) -> str:
        return f"<BridgePair {self.id}>"

    @property
    def host_runtime(self) -> str:
        return variant(self.host).runtime

    @property
    def guest_runtime(self) -> str:
        return variant(self.guest).runtime

    def guest_target(self) -> str | PetExecutor:
        """What to hand :func:`adapters.call` to reach the guest: the guest's
        runtime name (its shared pet; a plain await on the diagonal), or the
        guest variant's shared pet when host and guest are two variants of
        one runtime (so the call really crosses to the other loop)."""
        guest = variant(self.guest)
        if self.guest != self.host and guest.runtime == self.host_runtime:
            from .._pets import pet

            return pet(guest.runtime, **guest.options())
        if guest.loop is not None:
            from .._pets import pet

            return pet(guest.runtime, **guest.options())
        return guest.runtime

    async def call(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await adapters.call(<the guest>, async_fn, *args)``."""
        from adapters import call

        return await call(self.guest_target(), async_fn, *args)

    def unavailable_reason(self) -> str | None:
        for name in (self.host, self.guest):
            reason = variant(name).unavailable_reason()
            if reason is not None:
                return reason
        return None


PAIRS: dict[tuple[str, str], BridgePair] = {
    (h.name, g.name): BridgePair(h.name, g.name) for h in VARIANTS for g in VARIANTS
}
