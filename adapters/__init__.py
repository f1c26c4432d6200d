"""One adapter per runtime behind one small interface.

``adapters.get(name)`` imports ``adapters._<name>`` on first use;
``adapters.available()`` lists the runtimes usable here.
"""

from __future__ import annotations

from bridge._registry import RUNTIMES as RUNTIMES
from bridge._registry import RuntimeAdapter as RuntimeAdapter
from bridge._registry import available as available
from bridge._registry import get as get

from ._call import call as call

__all__ = ("RUNTIMES", "RuntimeAdapter", "available", "call", "get")
