"""From a run's results to tables: first plain data (``build``), then text
(``render``) or JSON (``as_json``), so the model is tested without a terminal."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ._runner import RowResult, Run
from ._stats import (
    TIME_UNIT,
    Comparison,
    Goal,
    Spread,
    format_comparison,
    format_value,
    paired,
    spread,
)

__all__ = (
    "GoalCheck",
    "Row",
    "Table",
    "as_json",
    "build",
    "environment",
    "footer_line",
    "header_lines",
    "render",
    "summary",
)

PACKAGES = (
    "runtime-bridge", "sniffio", "greenlet", "trio", "curio", "uvloop", "anyio",
    "greenback", "asgiref", "synchronicity", "trio-asyncio",
)  # fmt: skip


@dataclass(frozen=True)
class GoalCheck:
    """An absolute goal of a row, checked on the row's median."""

    goal: Goal
    passed: bool | None


@dataclass(frozen=True)
class Row:
    """One row of a table, with its comparisons against baselines."""

    key: str
    label: str
    unit: str
    status: str  # "ok", "skipped" or "failed"
    reason: str | None
    per_round: tuple[float | None, ...]
    summary: Spread | None
    goals: tuple[GoalCheck, ...]
    comparisons: tuple[tuple[str, Comparison], ...]  # (baseline label, comparison)
    failed_rounds: int
    rounds_run: int


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    rows: tuple[Row, ...]


def build(results: Sequence[RowResult]) -> list[Table]:
    """Tables per group, in the order the rows come."""
    by_key = {(r.case.group.name, r.case.key): r for r in results}
    tables: dict[str, list[Row]] = {}
    titles: dict[str, str] = {}
    for result in results:
        case = result.case
        titles[case.group.name] = case.group.title
        values = result.values()
        summary = spread(values)
        comparisons: list[tuple[str, Comparison]] = []
        for key, kind, goal in case.comparisons():
            base = by_key.get((case.group.name, key))
            base_values = base.values() if base is not None else [None] * len(values)
            per_round = paired(values, base_values, kind, higher_is_better=case.higher_is_better)
            comparison = Comparison(key, kind, tuple(per_round), spread(per_round), goal)
            comparisons.append((case.group.cases[key].label, comparison))
        goals = tuple(
            GoalCheck(g, None if summary is None else g.holds(summary.median))
            for g in case.goals
            if g.kind == "absolute"
        )
        reason: str | None
        if result.skipped is not None:
            status, reason = "skipped", result.skipped
        elif summary is None:
            status = "failed"
            reason = result.errors[0] if result.errors else "not measured (interrupted)"
        else:
            status, reason = "ok", (result.errors[0] if result.errors else None)
        tables.setdefault(case.group.name, []).append(
            Row(
                key=case.key,
                label=case.label,
                unit=case.unit,
                status=status,
                reason=reason,
                per_round=tuple(values),
                summary=summary,
                goals=goals,
                comparisons=tuple(comparisons),
                failed_rounds=result.failed_rounds,
                rounds_run=sum(1 for r in result.rounds if r is not None),
            )
        )
    return [Table(name, titles[name], tuple(rows)) for name, rows in tables.items()]


def summary(tables: Sequence[Table]) -> dict[str, int]:
    """Counts of rows by status and of goals by outcome."""
    counts = dict.fromkeys(
        ("rows", "ok", "skipped", "failed", "goals_passed", "goals_failed", "goals_unknown"), 0
    )
    outcome = {True: "goals_passed", False: "goals_failed", None: "goals_unknown"}
    for table in tables:
        for row in table.rows:
            counts["rows"] += 1
            counts[row.status] += 1
            for passed in [g.passed for g in row.goals] + [
                c.passed for _, c in row.comparisons if c.goal is not None
            ]:
                counts[outcome[passed]] += 1
    return counts


# ---------------------------------------------------------------------------
# Text


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def _range(lo: float, hi: float, unit: str) -> str:
    a, b = format_value(lo, unit), format_value(hi, unit)
    a_num, _, a_unit = a.partition(" ")
    b_unit = b.partition(" ")[2]
    return f"{a_num}..{b}" if a_unit == b_unit else f"{a}..{b}"


def _comparison_range(c: Comparison, unit: str) -> str:
    assert c.summary is not None
    lo, hi = c.summary.lo, c.summary.hi
    if c.kind == "difference":
        return _range(lo, hi, unit)
    return f"{format_comparison(lo, 'ratio').removesuffix('x')}..{format_comparison(hi, 'ratio')}"


def _lines(table: Table) -> list[tuple[str, str, str, str, str]]:
    """(name, median, spread, goal, verdict) cells; rows that did not run
    carry their note in the median cell and nothing after it."""
    cells: list[tuple[str, str, str, str, str]] = []
    for row in table.rows:
        name = f"  {row.label}"
        if row.status != "ok":
            word = "skipped" if row.status == "skipped" else "FAILED"
            cells.append((name, f"{word}: {row.reason}", "", "", ""))
            continue
        assert row.summary is not None
        s = row.summary
        goal = "; ".join(g.goal.condition for g in row.goals)
        verdict = " ".join(_verdict(g.passed) for g in row.goals)
        cells.append(
            (name, format_value(s.median, row.unit), _range(s.lo, s.hi, row.unit), goal, verdict)
        )
        for label, c in row.comparisons:
            cname = f"      vs {label}"
            goal = c.goal.condition if c.goal is not None else ""
            verdict = _verdict(c.passed) if c.goal is not None else ""
            if c.summary is None:
                note = "n/a: no round of both rows succeeded"
                if c.goal is not None:
                    note += f" (goal {goal} not checked)"
                cells.append((cname, note, "", "", ""))
                continue
            value = format_comparison(c.summary.median, c.kind, row.unit)
            cells.append((cname, value, _comparison_range(c, row.unit), goal, verdict))
        if row.failed_rounds:
            note = f"({row.failed_rounds} of {row.rounds_run} rounds failed: {row.reason})"
            cells.append((f"      {note}", "", "", "", ""))
    return cells


def render(tables: Sequence[Table], header: Sequence[str] = ()) -> str:
    """The tables as text, one block per group."""
    out = list(header)
    for table in tables:
        cells = _lines(table)
        heading = ("  row", "median", "min..max", "goal", "")
        # Notes in the median cell (skips, failures) do not widen the columns.
        measured = [c for c in cells if c[2] or not c[1]]
        widths = [
            max(len(c[i]) for c in [heading, *(cells if i == 0 else measured)]) for i in range(4)
        ]
        out.append("")
        out.append(f"{table.name}: {table.title}")
        for c in [heading, *cells]:
            if c is not heading and not c[2] and c[1]:
                out.append(f"{c[0]:<{widths[0]}}  {c[1]}".rstrip())
                continue
            line = (
                f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:<{widths[2]}}  "
                f"{c[3]:<{widths[3]}}  {c[4]}"
            )
            out.append(line.rstrip())
    return "\n".join(out)


def header_lines(run: Run, env: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v is not None)
    scale = f" x{settings['scale']:g}" if settings["scale"] != 1 else ""
    return [
        f"runtime-bridge benchmarks: Python {env['python']} ({env['implementation']}) "
        f"on {env['platform']}, {env['cpu_count']} CPUs ({env['cpu_model']})",
        f"packages: {versions}",
        f"rounds: {run.rounds}, interleaved and shuffled (seed {run.seed}); budget: "
        f"{settings['budget']:g} s per row per round{scale}; each row in a "
        f"process of its own, SIGINT at default_int_handler: "
        f"{'yes' if run.sigint_default else 'NO'}",
        "row: median over rounds of the per-round median per operation (min..max over rounds);",
        "vs: the row against a baseline of the same group, median of the per-round ratios "
        "(min..max); 'Nx faster' = baseline / row.",
    ]


def footer_line(run: Run, tables: Sequence[Table]) -> str:
    n = summary(tables)
    text = (
        f"{n['rows']} rows ({n['ok']} measured, {n['skipped']} skipped, {n['failed']} failed); "
        f"goals: {n['goals_passed']} passed, {n['goals_failed']} failed"
    )
    if n["goals_unknown"]:
        text += f", {n['goals_unknown']} not measured"
    text += f"; {run.seconds:.1f} s"
    return text + (" (INTERRUPTED)" if run.interrupted else "")


# ---------------------------------------------------------------------------
# JSON


def environment() -> dict[str, Any]:
    """Where the numbers come from."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
        "packages": packages,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _spread_json(s: Spread | None) -> dict[str, float] | None:
    return None if s is None else {"median": s.median, "min": s.lo, "max": s.hi, "n": s.n}


def as_json(
    run: Run, tables: Sequence[Table], env: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """The whole run as JSON-ready data; times in seconds per operation."""
    raw = {(r.case.group.name, r.case.key): r for r in run.results}
    groups = []
    for table in tables:
        rows = []
        for row in table.rows:
            result = raw[(table.name, row.key)]
            rows.append(
                {
                    "key": row.key,
                    "label": row.label,
                    "unit": row.unit if row.unit != TIME_UNIT else "s/op",
                    "status": row.status,
                    "reason": row.reason,
                    "inside": result.case.inside,
                    "summary": _spread_json(row.summary),
                    "per_round": list(row.per_round),
                    "goals": [{"goal": g.goal.text, "passed": g.passed} for g in row.goals],
                    "comparisons": [
                        {
                            "baseline": c.baseline,
                            "kind": c.kind,
                            "summary": _spread_json(c.summary),
                            "per_round": list(c.per_round),
                            "goal": c.goal.text if c.goal is not None else None,
                            "passed": c.passed,
                        }
                        for _, c in row.comparisons
                    ],
                    "errors": result.errors,
                    "rounds": result.rounds,
                }
            )
        groups.append({"name": table.name, "title": table.title, "rows": rows})
    return {
        "env": env,
        "settings": {**settings, "rounds": run.rounds, "seed": run.seed},
        "sigint_default_in_workers": run.sigint_default,
        "interrupted": run.interrupted,
        "seconds": run.seconds,
        "summary": summary(tables),
        "groups": groups,
    }
