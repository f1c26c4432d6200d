"""The low-level API: kernels driven by hand, tasks, and the detection hooks.

For adapters and tests. A ``Kernel(clock=...)`` belongs to the thread that
made it. From that thread it can be

- stepped: ``spawn`` tasks, ``run_until_stalled`` (a test can then check the
  state of every task between two steps), and ``close``;
- driven again and again: ``run_forever`` until ``stop`` (from a task, a
  callback or a ``call_at`` timer), with ``set_paused(True)`` in between so
  that its token refuses work (the ``block_on`` runner does this);
- run once: ``run(async_fn, *args)``, which is what ``pet_executor.run`` does.

``current_kernel()`` and ``current_task_or_none()`` are the cheap questions
detection asks.
"""

from __future__ import annotations

from ._clock import Clock as Clock
from ._kernel import Kernel as Kernel
from ._kernel import KernelToken as KernelToken
from ._kernel import Task as Task
from ._kernel import Timer as Timer
from ._kernel import checkpoint as checkpoint
from ._kernel import current_kernel as current_kernel
from ._kernel import current_task_or_none as current_task_or_none

__all__ = (
    "Clock",
    "Kernel",
    "KernelToken",
    "Task",
    "Timer",
    "checkpoint",
    "current_kernel",
    "current_task_or_none",
)

# Public objects show their public path in tracebacks and docs.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("pet_executor._"):
        _obj.__module__ = "pet_executor.lowlevel"
del _name, _obj
