"""Statistics of rounds, comparisons between rows, goals, and how values print.

Pure functions and frozen data, no I/O, so every rule here is unit-tested
without a worker process.

A row's result is one value per round (``None`` for a round that failed).
Comparisons pair a row with a baseline round by round, because both were
measured in the same round, moments apart: machine noise that slows a whole
round cancels out of the per-round ratio. A comparison reports the median of
the per-round values and their min..max ("spread").
"""

from __future__ import annotations

import math
import operator
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = (
    "TIME_UNIT",
    "Comparison",
    "Goal",
    "GoalError",
    "Kind",
    "Spread",
    "format_comparison",
    "format_value",
    "paired",
    "sample_stats",
    "spread",
)

#: The unit of timed rows: seconds per operation.
TIME_UNIT = "s"

#: How a row relates to a baseline: ``ratio`` is row / baseline; ``speedup`` is
#: how many times better the row is (baseline / row for times); ``difference``
#: is row - baseline, in the row's unit.
Kind = Literal["ratio", "speedup", "difference"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_TIME_SCALES = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class Spread:
    """The median of some values and their range."""

    median: float
    lo: float
    hi: float
    n: int


def spread(values: Sequence[float | None]) -> Spread | None:
    """Median, min and max of the values that are not None, or None if none are."""
    xs = [x for x in values if x is not None]
    if not xs:
        return None
    return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def sample_stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and p90 of one round's samples (per-operation values)."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    p90 = xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
    return {"median": statistics.median(xs), "min": xs[0], "p90": p90}


def paired(
    row: Sequence[float | None],
    baseline: Sequence[float | None],
    kind: Kind,
    *,
    higher_is_better: bool = False,
) -> list[float | None]:
    """Per-round comparison of ``row`` with ``baseline`` (same round index).

    A round where either value is missing (failed) gives None, and so does a
    ratio or speedup whose denominator is zero.
    """
    out: list[float | None] = []
    for r, b in zip(row, baseline, strict=True):
        if r is None or b is None:
            out.append(None)
        elif kind == "difference":
            out.append(r - b)
        else:
            num, den = r, b
            if kind == "speedup" and not higher_is_better:
                num, den = b, r
            out.append(num / den if den else None)
    return out


class GoalError(ValueError):
    """A goal that cannot be parsed or does not fit its row."""


_GOAL_RE = re.compile(
    r"""^\s*(?P<op><=|>=|<|>)\s*
    (?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*
    (?:
        x\s*(?P<faster>faster\s+than\s+)?(?P<xbase>[A-Za-z_]\w*)
      | (?P<unit>[^\s]+)(?:\s+over\s+(?P<obase>[A-Za-z_]\w*))?
    )\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Goal:
    """A declared goal for a row, parsed from text such as:

    - ``"<= 2 µs"``: absolute, on the row's median (time units: ns, µs/us, ms, s;
      other rows use their own unit, e.g. ``">= 50000 calls/s"``);
    - ``"<= 1.5x loop_ruc"``: the ratio row / baseline ``loop_ruc``;
    - ``">= 5x faster than asyncio_run"``: baseline / row (row / baseline when
      higher is better);
    - ``"<= 3 µs over no_portal"``: the difference row - baseline.

    Baselines are case keys of the same group. ``threshold`` is in the row's
    base unit (seconds for timed rows).
    """

    text: str
    op: str  # one of _OPS
    threshold: float
    kind: Literal["absolute", "ratio", "speedup", "difference"]
    baseline: str | None = None

    @classmethod
    def parse(cls, text: str, *, unit: str = TIME_UNIT) -> Goal:
        """Parse ``text`` for a row whose values are in ``unit``."""
        m = _GOAL_RE.match(text)
        if m is None:
            raise GoalError(
                f"cannot read the goal {text!r}; write one of '<= 2 µs', '<= 1.5x KEY', "
                f"'>= 5x faster than KEY', '<= 3 µs over KEY' (KEY: a case key of the group)"
            )
        op, number = m["op"], float(m["num"])
        if m["xbase"] is not None:
            return cls(text, op, number, "speedup" if m["faster"] else "ratio", m["xbase"])
        threshold = number * _unit_scale(m["unit"], unit, text)
        if m["obase"] is not None:
            return cls(text, op, threshold, "difference", m["obase"])
        return cls(text, op, threshold, "absolute")

    @property
    def comparison_kind(self) -> Kind | None:
        """The kind of comparison this goal reads, or None for an absolute goal."""
        if self.kind == "absolute":
            return None
        return self.kind

    @property
    def condition(self) -> str:
        """The goal without its baseline, for display next to the comparison."""
        if self.baseline is None:
            return self.text.strip()
        cut = self.text.rfind(self.baseline)
        head = self.text[:cut].strip()
        for word in ("than", "over"):
            head = head.removesuffix(word).strip()
        return head

    def holds(self, value: float) -> bool:
        """Whether ``value`` (the row's median, or the comparison's) meets the goal."""
        return not math.isnan(value) and _OPS[self.op](value, self.threshold)


def _unit_scale(written: str, unit: str, text: str) -> float:
    if unit == TIME_UNIT:
        try:
            return _TIME_SCALES[written]
        except KeyError:
            raise GoalError(
                f"goal {text!r}: {written!r} is not a time unit; use ns, µs (or us), ms or s"
            ) from None
    if written != unit:
        raise GoalError(f"goal {text!r}: the row's unit is {unit!r}, not {written!r}")
    return 1.0


def format_value(value: float, unit: str = TIME_UNIT) -> str:
    """A value in its unit, about three significant digits: ``312 ns``, ``1.23 µs``."""
    if unit == TIME_UNIT:
        mag = abs(value)
        if mag < 1e-6:
            return f"{_sig(value * 1e9)} ns"
        if mag < 1e-3:
            return f"{_sig(value * 1e6)} µs"
        if mag < 1.0:
            return f"{_sig(value * 1e3)} ms"
        return f"{_sig(value)} s"
    return f"{_sig(value)} {unit}"


def _sig(x: float) -> str:
    mag = abs(x)
    if mag >= 1000:
        return f"{x:,.0f}"
    if mag >= 100:
        return f"{x:.0f}"
    if mag >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


@dataclass(frozen=True)
class Comparison:
    """A row against one baseline of its group: per-round values and summary."""

    baseline: str
    kind: Kind
    per_round: tuple[float | None, ...]
    summary: Spread | None
    goal: Goal | None = None

    @property
    def passed(self) -> bool | None:
        """Whether the goal holds on the median; None without a goal or data."""
        if self.goal is None or self.summary is None:
            return None
        return self.goal.holds(self.summary.median)


def format_comparison(value: float, kind: Kind, unit: str = TIME_UNIT) -> str:
    """``1.85x``, ``5.5x faster`` or ``+1.20 µs``."""
    if kind == "difference":
        text = format_value(value, unit)
        return text if text.startswith("-") else "+" + text
    ratio = f"{_sig(value)}x"
    return f"{ratio} faster" if kind == "speedup" else ratio
