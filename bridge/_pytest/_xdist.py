"""A pytest-xdist scheduler that keeps the tests of one runtime on one worker
(their run, and the wider fixtures in it, stay warm), and spreads the other
tests one by one. Imported only under pytest-xdist.

The controller knows tests by node id only: the runtime is read from the id
in brackets (``test_x[trio]``, ``test_x[trio-3]``, ``test_y[trio->curio]``).
"""

from __future__ import annotations

import re
from typing import Any

from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

from ._variants import VARIANTS

__all__ = ("host_of_nodeid", "scheduler")

_NAMES = "|".join(re.escape(v.name) for v in sorted(VARIANTS, key=lambda v: -len(v.name)))
_HOST = re.compile(rf"(?:\[|-)({_NAMES})(?:->[\w+]+)?(?=-|\])")


def host_of_nodeid(nodeid: str) -> str | None:
    """The host variant of a bridge test's node id, or None."""
    bracket = nodeid.find("[")
    if bracket < 0:
        return None
    match = _HOST.search(nodeid, bracket)
    return match.group(1) if match else None


class _ByRuntime(LoadScopeScheduling):  # type: ignore[misc]
    def _split_scope(self, nodeid: str) -> str:
        host = host_of_nodeid(nodeid)
        return f"bridge-runtime-{host}" if host is not None else nodeid


def scheduler(config: Any, log: Any) -> Any:
    return _ByRuntime(config, log)
