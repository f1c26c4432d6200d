"""Declaring benchmarks: a ``Group`` of rows, and a decorator per row.

A row is either a timed *case* (the harness times a callable and reports the
time per operation) or a *metric* (the function returns one number per
round, in its own unit: bytes per task, calls per second). Both run in a
worker process of their own; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ._stats import TIME_UNIT, Goal, GoalError, Kind

__all__ = ("INSIDE", "Case", "Group", "Skip")

F = TypeVar("F", bound=Callable[..., Any])

#: Where a row's function runs inside its worker, and what each place needs.
#: ``None``: the worker's main thread, no event loop (a plain thread);
#: ``"thread"``: a fresh plain thread that is not the main thread;
#: a runtime name: inside a task of a new run of that runtime, made per round.
INSIDE: dict[str | None, tuple[str, ...]] = {
    None: (),
    "thread": (),
    "asyncio": (),
    "uvloop": ("uvloop",),
    "trio": ("trio",),
    "curio": ("curio",),
    "pet_executor": ("pet_executor",),
}


class Skip(Exception):
    """Raise inside a row's function to skip the row; the message is the reason."""


@dataclass(frozen=True, eq=False)
class Case:
    """One row of a group, as declared. See :meth:`Group.case` and :meth:`Group.metric`."""

    group: Group
    key: str
    label: str
    fn: Callable[..., Any]
    kind: Literal["time", "metric"]
    unit: str
    higher_is_better: bool
    inside: str | None
    requires: tuple[str, ...]
    goals: tuple[Goal, ...]
    vs: tuple[str, ...]
    ops: int
    budget: float | None
    takes_timer: bool

    @property
    def full_key(self) -> str:
        """``group.key``: how ``--only`` and ``--list`` name the row."""
        return f"{self.group.name}.{self.key}"

    @property
    def all_requires(self) -> tuple[str, ...]:
        """Modules the row needs: its own ``requires`` and its runtime's."""
        extra = INSIDE[self.inside]
        return tuple(dict.fromkeys(extra + self.requires))

    def comparisons(self) -> list[tuple[str, Kind, Goal | None]]:
        """(baseline key, kind, goal or None) for each baseline the row is shown against.

        Each goal on a baseline makes one comparison in the goal's own terms;
        a baseline named in ``vs`` without a goal is shown as a plain ratio.
        """
        out: list[tuple[str, Kind, Goal | None]] = []
        for goal in self.goals:
            kind = goal.comparison_kind
            if goal.baseline is not None and kind is not None:
                out.append((goal.baseline, kind, goal))
        with_goal = [key for key, _, _ in out]
        out.extend((key, "ratio", None) for key in self.vs if key not in with_goal)
        # Baselines in the order ``vs`` names them, then those only goals name.
        rank = {key: i for i, key in enumerate(dict.fromkeys([*self.vs, *with_goal]))}
        return sorted(out, key=lambda item: rank[item[0]])

    def baselines(self) -> list[str]:
        return list(dict.fromkeys(key for key, _, _ in self.comparisons()))


class Group:
    """A table of rows measured side by side, with ratios between them.

    ``name`` is a short identifier (used by ``--only``, ``--list`` and the
    JSON output); ``title`` heads the table. ``budget`` (seconds per row per
    round) overrides the harness default for every row of the group.
    """

    def __init__(self, name: str, title: str, *, budget: float | None = None) -> None:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"group name {name!r}: use letters, digits, '_' or '-'")
        self.name = name
        self.title = title
        self.budget = budget
        self.cases: dict[str, Case] = {}
        #: The dotted name of the module that declares the group, set when
        #: benchmarks are discovered; workers import it to find their row.
        self.module: str | None = None

    def __repr__(self) -> str:
        return f"<Group {self.name!r}: {len(self.cases)} rows>"

    def case(
        self,
        label: str,
        *,
        key: str | None = None,
        inside: str | None = None,
        requires: Sequence[str] = (),
        goal: str | Sequence[str] = (),
        vs: str | Sequence[str] = (),
        ops: int = 1,
        budget: float | None = None,
    ) -> Callable[[F], F]:
        """Register a timed row. The decorated function runs in the row's worker
        process (``inside`` says where: see :data:`INSIDE`), once per round, and
        gives the harness what to time, in one of these ways:

        - returns a callable: the harness warms it up and times calls to it
          (awaits them, when a call returns an awaitable);
        - is a generator (or async generator) that yields that callable:
          code before the ``yield`` is set-up, code after it is teardown;
        - takes one parameter, a :class:`~benchmarks.Timer`, and times
          itself with ``timer.time(fn)`` or ``await timer.time_async(afn)``
          wherever it likes (e.g. in a worker thread of the runtime).

        The function may be ``async def`` when ``inside`` names a runtime.
        ``ops``: operations per call; times are reported per operation.
        ``requires``: modules that must import, else the row is skipped with
        the reason. ``goal`` and ``vs``: see the README.
        """
        return self._register(
            label,
            key=key,
            kind="time",
            unit=TIME_UNIT,
            higher_is_better=False,
            inside=inside,
            requires=requires,
            goal=goal,
            vs=vs,
            ops=ops,
            budget=budget,
        )

    def metric(
        self,
        label: str,
        *,
        unit: str,
        higher_is_better: bool | None = None,
        key: str | None = None,
        inside: str | None = None,
        requires: Sequence[str] = (),
        goal: str | Sequence[str] = (),
        vs: str | Sequence[str] = (),
        budget: float | None = None,
    ) -> Callable[[F], F]:
        """Register a row whose function returns one number per round, in ``unit``
        (``"B/task"``, ``"calls/s"``). It may take a :class:`~benchmarks.Timer`
        for ``timer.budget``, the seconds the round may spend. Higher is better
        when ``higher_is_better``, by default when the unit ends in ``/s``.
        """
        if not unit or unit == TIME_UNIT:
            raise ValueError(f"metric {label!r}: give a unit such as 'B/task' or 'calls/s'")
        better = unit.endswith("/s") if higher_is_better is None else higher_is_better
        return self._register(
            label,
            key=key,
            kind="metric",
            unit=unit,
            higher_is_better=better,
            inside=inside,
            requires=requires,
            goal=goal,
            vs=vs,
            ops=1,
            budget=budget,
        )

    def _register(
        self,
        label: str,
        *,
        key: str | None,
        kind: Literal["time", "metric"],
        unit: str,
        higher_is_better: bool,
        inside: str | None,
        requires: Sequence[str],
        goal: str | Sequence[str],
        vs: str | Sequence[str],
        ops: int,
        budget: float | None,
    ) -> Callable[[F], F]:
        if inside not in INSIDE:
            known = ", ".join(repr(k) for k in INSIDE)
            raise ValueError(f"row {label!r}: inside={inside!r} is not one of {known}")
        if ops < 1:
            raise ValueError(f"row {label!r}: ops must be at least 1, not {ops}")
        goal_texts = (goal,) if isinstance(goal, str) else tuple(goal)
        vs_keys = (vs,) if isinstance(vs, str) else tuple(vs)
        try:
            goals = tuple(Goal.parse(text, unit=unit) for text in goal_texts)
        except GoalError as exc:
            raise GoalError(f"row {label!r} of group {self.name!r}: {exc}") from None

        def register(fn: F) -> F:
            case_key = key or fn.__name__
            if case_key in self.cases:
                raise ValueError(f"group {self.name!r} already has a row with key {case_key!r}")
            self.cases[case_key] = Case(
                group=self,
                key=case_key,
                label=label,
                fn=fn,
                kind=kind,
                unit=unit,
                higher_is_better=higher_is_better,
                inside=inside,
                requires=tuple(requires),
                goals=goals,
                vs=vs_keys,
                ops=ops,
                budget=budget,
                takes_timer=_takes_timer(fn, label),
            )
            return fn

        return register

    def validate(self) -> None:
        """Check that every baseline a row names is a row of this group, with the same unit."""
        for case in self.cases.values():
            for baseline in case.baselines():
                other = self.cases.get(baseline)
                if other is None:
                    known = ", ".join(self.cases)
                    raise ValueError(
                        f"row {case.key!r} of group {self.name!r} is compared with "
                        f"{baseline!r}, which is not a row of the group; its rows: {known}"
                    )
                if other.unit != case.unit:
                    raise ValueError(
                        f"row {case.key!r} ({case.unit}) cannot be compared with "
                        f"{baseline!r} ({other.unit}): the units differ"
                    )
                if other is case:
                    raise ValueError(f"row {case.key!r} is compared with itself")


def _takes_timer(fn: Callable[..., Any], label: str) -> bool:
    required = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 1:
        raise TypeError(
            f"row {label!r}: {fn.__name__} takes {len(required)} parameters; "
            f"a row's function takes none, or one (the Timer)"
        )
    return bool(required)
