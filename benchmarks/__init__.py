"""Side-by-side timings of runtime-bridge and its peers, printed as ratios.

Run ``python -m benchmarks`` (``make bench``). Rows are declared in
``benchmarks/bench_*.py`` with :class:`Group`; see ``benchmarks/README.md``.
"""

from __future__ import annotations

from ._api import Case as Case
from ._api import Group as Group
from ._api import Skip as Skip
from ._timing import Timer as Timer

__all__ = ("Case", "Group", "Skip", "Timer")
