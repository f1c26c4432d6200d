"""One adapter per runtime behind one small interface, and cross-runtime await.

``adapters.get(name)`` imports ``adapters._<name>`` on first use;
``adapters.available()`` lists the runtimes usable here. ``adapters.call``,
``adapters.iterate``, ``adapters.enter`` and ``adapters.wrap`` await work,
iterators, context managers and futures of one runtime from a task of any
other (docs/adapters.md).
"""

from __future__ import annotations

from bridge._registry import RUNTIMES as RUNTIMES
from bridge._registry import RuntimeAdapter as RuntimeAdapter
from bridge._registry import available as available
from bridge._registry import get as get

from ._call import GuestContextManager as GuestContextManager
from ._call import GuestIterator as GuestIterator
from ._call import call as call
from ._call import enter as enter
from ._call import iterate as iterate
from ._wrap import wrap as wrap

__all__ = (
    "RUNTIMES",
    "GuestContextManager",
    "GuestIterator",
    "RuntimeAdapter",
    "available",
    "call",
    "enter",
    "get",
    "iterate",
    "wrap",
)

for _name in ("call", "enter", "iterate", "wrap", "GuestIterator", "GuestContextManager"):
    globals()[_name].__module__ = "adapters"
del _name
