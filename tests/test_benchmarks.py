"""The benchmark harness: its statistics, its declarations, one round in
process, workers end to end, and a quick run of the real ``context`` group."""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import Group, Skip, Timer
from benchmarks._report import build, render, summary
from benchmarks._runner import RowResult, discover, measure, select
from benchmarks._stats import (
    Goal,
    GoalError,
    format_comparison,
    format_value,
    paired,
    sample_stats,
    spread,
)
from benchmarks._timing import run_round

ROOT = Path(__file__).resolve().parent.parent

# --- statistics ---------------------------------------------------------------


def test_spread_ignores_failed_rounds_and_is_none_without_data() -> None:
    s = spread([3.0, None, 1.0, 2.0])
    assert s is not None
    assert (s.median, s.lo, s.hi, s.n) == (2.0, 1.0, 3.0, 3)
    assert spread([None, None]) is None


def test_sample_stats_median_min_p90() -> None:
    stats = sample_stats([float(x) for x in range(1, 12)])  # 1..11
    assert stats == {"median": 6.0, "min": 1.0, "p90": 10.0}


def test_paired_ratios_are_per_round_and_skip_failed_rounds() -> None:
    row = [2.0, None, 3.0, 4.0]
    base = [1.0, 1.0, None, 0.0]
    assert paired(row, base, "ratio") == [2.0, None, None, None]
    assert paired(row, base, "speedup") == [0.5, None, None, 0.0]
    assert paired(row, base, "difference") == [1.0, None, None, 4.0]


def test_speedup_means_higher_is_better_for_rates() -> None:
    # calls/s: the row is 2x better when it does twice the calls.
    assert paired([200.0], [100.0], "speedup", higher_is_better=True) == [2.0]
    assert paired([200.0], [100.0], "speedup", higher_is_better=False) == [0.5]


def test_paired_median_differs_from_ratio_of_medians() -> None:
    # Two noisy rounds where both rows slowed down together: the per-round
    # ratio stays 2.0, which is the point of pairing.
    s = spread(paired([2.0, 8.0], [1.0, 4.0], "ratio"))
    assert s is not None
    assert (s.median, s.lo, s.hi) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(
    ("text", "kind", "threshold", "baseline"),
    [
        ("<= 2 µs", "absolute", 2e-6, None),
        ("<=2us", "absolute", 2e-6, None),
        ("< 500 ns", "absolute", 5e-7, None),
        ("<= 1.5 ms", "absolute", 1.5e-3, None),
        ("<= 1.0x loop_ruc", "ratio", 1.0, "loop_ruc"),
        ("<= 1.5 x wake_floor", "ratio", 1.5, "wake_floor"),
        (">= 5x faster than asyncio_run", "speedup", 5.0, "asyncio_run"),
        ("<= 3 µs over no_portal", "difference", 3e-6, "no_portal"),
        ("<= -0.5 ms over other", "difference", -5e-4, "other"),
    ],
)
def test_goal_parse(text: str, kind: str, threshold: float, baseline: str | None) -> None:
    goal = Goal.parse(text)
    assert goal.kind == kind
    assert goal.threshold == pytest.approx(threshold)
    assert goal.baseline == baseline


def test_goal_in_a_metric_unit() -> None:
    goal = Goal.parse(">= 50000 calls/s", unit="calls/s")
    assert (goal.kind, goal.threshold) == ("absolute", 50000.0)
    assert goal.holds(60000.0)
    assert not goal.holds(40000.0)
    with pytest.raises(GoalError, match="unit is 'calls/s'"):
        Goal.parse(">= 5 B/task", unit="calls/s")


@pytest.mark.parametrize("text", ["about 2 µs", "<= 2 parsecs", "<= 1.5x", "<= x foo"])
def test_unreadable_goals_say_how_to_write_one(text: str) -> None:
    with pytest.raises(GoalError):
        Goal.parse(text)


def test_goal_holds_and_condition() -> None:
    assert Goal.parse("<= 2 µs").holds(1.9e-6)
    assert not Goal.parse("<= 2 µs").holds(2.1e-6)
    assert not Goal.parse("<= 2 µs").holds(float("nan"))
    assert Goal.parse("< 1x a").holds(0.99)
    assert not Goal.parse("> 1x a").holds(1.0)
    assert Goal.parse(">= 5x faster than asyncio_run").condition == ">= 5x faster"
    assert Goal.parse("<= 1.0x loop_ruc").condition == "<= 1.0x"
    assert Goal.parse("<= 3 µs over no_portal").condition == "<= 3 µs"
    assert Goal.parse("<= 2 µs").condition == "<= 2 µs"


def test_value_formatting() -> None:
    assert format_value(3.12e-7) == "312 ns"
    assert format_value(1.234e-6) == "1.23 µs"
    assert format_value(4.56e-5) == "45.6 µs"
    assert format_value(2.5) == "2.50 s"
    assert format_value(123456.0, "calls/s") == "123,456 calls/s"
    assert format_comparison(1.854, "ratio") == "1.85x"
    assert format_comparison(5.5, "speedup") == "5.50x faster"
    assert format_comparison(1.2e-6, "difference") == "+1.20 µs"
    assert format_comparison(-1.2e-6, "difference") == "-1.20 µs"


# --- declarations ---------------------------------------------------------------


def _noop() -> Callable[[], None]:
    return lambda: None


def test_comparisons_follow_vs_then_goals_in_the_goals_terms() -> None:
    g = Group("g", "t")
    g.case("a", key="a")(_noop)
    g.case("b", key="b")(_noop)
    g.case("c", key="c", vs=("b", "a"), goal=(">= 2x faster than a", "<= 1 µs"))(_noop)
    g.validate()
    comparisons = g.cases["c"].comparisons()
    assert [(key, kind) for key, kind, _ in comparisons] == [("b", "ratio"), ("a", "speedup")]
    assert g.cases["c"].baselines() == ["b", "a"]


def test_unknown_baseline_is_named_with_the_group_rows() -> None:
    g = Group("g", "t")
    g.case("a", key="a", goal="<= 1x nope")(_noop)
    with pytest.raises(ValueError, match="'nope', which is not a row of the group; its rows: a"):
        g.validate()


def test_units_must_match_to_compare() -> None:
    g = Group("g", "t")
    g.case("time", key="t")(_noop)
    g.metric("rate", key="r", unit="calls/s", vs="t")(lambda: 1.0)
    with pytest.raises(ValueError, match="the units differ"):
        g.validate()


def test_declaration_mistakes_are_caught_early() -> None:
    g = Group("g", "t")
    with pytest.raises(ValueError, match="inside='tokio'"):
        g.case("x", inside="tokio")
    with pytest.raises(GoalError, match="row 'x' of group 'g'"):
        g.case("x", goal="fast please")
    g.case("x", key="k")(_noop)
    with pytest.raises(ValueError, match="already has a row with key 'k'"):
        g.case("y", key="k")(_noop)
    with pytest.raises(TypeError, match="takes 2 parameters"):
        g.case("z")(lambda a, b: None)
    with pytest.raises(ValueError, match="give a unit"):
        g.metric("m", unit="")


def test_metric_rates_are_higher_is_better_by_default() -> None:
    g = Group("g", "t")
    g.metric("rate", key="r", unit="calls/s")(lambda: 1.0)
    g.metric("memory", key="m", unit="B/task")(lambda: 1.0)
    assert g.cases["r"].higher_is_better
    assert not g.cases["m"].higher_is_better


def test_only_brings_the_baselines_along() -> None:
    g = Group("g", "t")
    g.case("a", key="a")(_noop)
    g.case("b", key="b", vs="a")(_noop)
    g.case("c", key="c", goal="<= 1x b")(_noop)
    h = Group("h", "other")
    h.case("d", key="d")(_noop)
    assert [c.key for c in select([g, h], ["g.c"])] == ["a", "b", "c"]
    assert [c.key for c in select([g, h], ["other"])] == ["d"]
    assert len(select([g, h])) == 4


def test_discover_finds_the_context_group() -> None:
    groups, broken = discover()
    assert not broken
    context = next(g for g in groups if g.name == "context")
    assert context.module == "benchmarks.bench_context"
    assert {"ctx_asyncio", "sniffio_asyncio", "loop_asyncio", "ctx_plain"} <= set(context.cases)


# --- tables ---------------------------------------------------------------------


def _result(case: Any, values: list[float | None], **kw: Any) -> RowResult:
    rounds: list[dict[str, Any] | None] = [
        {"status": "ok", "value": v} if v is not None else {"status": "error", "error": "E: x"}
        for v in values
    ]
    return RowResult(case, rounds, **kw)


def test_tables_show_ratios_goals_skips_and_failures() -> None:
    g = Group("grp", "a title")
    g.case("ours", key="ours", goal=("<= 2 µs", "<= 1.0x peer"), vs="peer")(_noop)
    g.case("peer", key="peer")(_noop)
    g.case("gone", key="gone")(_noop)
    g.case("broken", key="broken")(_noop)
    g.validate()
    results = [
        _result(g.cases["ours"], [1.0e-6, 3.0e-6, 2.0e-6]),
        _result(g.cases["peer"], [0.5e-6, 2.0e-6, 4.0e-6]),
        _result(g.cases["gone"], [None, None, None], skipped="trio is not installed"),
        RowResult(g.cases["broken"], [{"status": "error", "error": "ValueError: boom"}] * 3,
                  errors=["ValueError: boom"]),
    ]  # fmt: skip
    [table] = build(results)
    ours = table.rows[0]
    assert ours.summary is not None
    assert ours.summary.median == 2.0e-6
    assert [g.passed for g in ours.goals] == [True]
    [(label, comparison)] = ours.comparisons
    assert label == "peer"
    assert comparison.per_round == (2.0, 1.5, 0.5)
    assert comparison.summary is not None
    assert comparison.summary.median == 1.5
    assert comparison.passed is False
    text = render([table])
    assert "grp: a title" in text
    assert "1.50x  0.50..2.00x" in text
    assert "skipped: trio is not installed" in text
    assert "FAILED: ValueError: boom" in text
    counts = summary([table])
    assert (counts["ok"], counts["skipped"], counts["failed"]) == (2, 1, 1)
    assert (counts["goals_passed"], counts["goals_failed"]) == (1, 1)


# --- one round, in this process ---------------------------------------------------


def _case(fn: Callable[..., Any], **kw: Any) -> Any:
    g = Group("g", "t")
    kind = kw.pop("metric", None)
    if kind:
        g.metric("row", key="row", unit=kind, **kw)(fn)
    else:
        g.case("row", key="row", **kw)(fn)
    return g.cases["row"]


BUDGET = 0.005


def test_a_returned_callable_is_timed_in_batches() -> None:
    calls = []
    result = run_round(_case(lambda: lambda: calls.append(1)), BUDGET)
    assert result["value"] > 0
    assert result["samples"] >= 5
    assert result["batch"] >= 1
    assert len(calls) >= result["calls"]


def test_ops_divide_the_time() -> None:
    one = run_round(_case(lambda: lambda: sum(range(1000))), BUDGET)["value"]
    per = run_round(_case(lambda: lambda: sum(range(1000)), ops=1000), BUDGET)["value"]
    assert per < one / 100


def test_generator_rows_tear_down() -> None:
    events: list[str] = []

    def row() -> Iterator[Callable[[], None]]:
        events.append("setup")
        yield lambda: None
        events.append("teardown")

    run_round(_case(row), BUDGET)
    assert events == ["setup", "teardown"]


def test_async_generator_rows_run_inside_asyncio_and_tear_down() -> None:
    events: list[str] = []

    async def row() -> Any:
        import asyncio

        asyncio.get_running_loop()  # raises unless inside a task's loop
        events.append("setup")
        yield lambda: asyncio.sleep(0)  # a lambda giving awaitables: awaited
        events.append("teardown")

    assert run_round(_case(row, inside="asyncio"), BUDGET)["value"] > 0
    assert events == ["setup", "teardown"]


def test_a_row_can_time_itself_elsewhere_through_its_timer() -> None:
    async def row(timer: Timer) -> None:
        import asyncio

        await asyncio.to_thread(timer.time, lambda: None)

    assert run_round(_case(row, inside="asyncio"), BUDGET)["value"] > 0


def test_inside_thread_is_not_the_main_thread() -> None:
    import threading

    def row() -> Callable[[], None]:
        assert threading.current_thread() is not threading.main_thread()
        return lambda: None

    assert run_round(_case(row, inside="thread"), BUDGET)["value"] > 0


def test_metrics_return_their_number() -> None:
    assert run_round(_case(lambda timer: 42, metric="B/task"), BUDGET) == {"value": 42.0}
    with pytest.raises(TypeError, match="not a number in B/task"):
        run_round(_case(lambda: "lots", metric="B/task"), BUDGET)


def test_awaitables_outside_a_runtime_are_refused_with_the_fix() -> None:
    import asyncio

    with pytest.raises(TypeError, match="inside='asyncio'"):
        run_round(_case(lambda: lambda: asyncio.sleep(0)), BUDGET)

    async def row() -> Callable[[], None]:
        return lambda: None

    with pytest.raises(TypeError, match="declare inside='asyncio'"):
        run_round(_case(row), BUDGET)


def test_a_row_that_gives_nothing_to_time_says_what_to_do() -> None:
    with pytest.raises(TypeError, match="gave nothing to time"):
        run_round(_case(lambda: None), BUDGET)
    with pytest.raises(TypeError, match="return \\(or yield\\) the callable"):
        run_round(_case(lambda: 42), BUDGET)


def test_skip_propagates() -> None:
    def row() -> None:
        raise Skip("not yet")

    with pytest.raises(Skip, match="not yet"):
        run_round(_case(row), BUDGET)


# --- workers, end to end -------------------------------------------------------------

PROBE = """
from __future__ import annotations
import os
import signal
import time
from benchmarks import Group, Skip

g = Group("probe", "probe rows")

@g.case("fast", vs="slow")
def fast():
    return lambda: None

@g.case("slow")
def slow():
    return lambda: time.sleep(0.0002)

@g.case("fails")
def fails():
    def boom():
        raise ValueError("boom")
    return boom

@g.case("missing", requires=("no_such_module_for_bench",))
def missing():
    return lambda: None

@g.case("skips")
def skips():
    raise Skip("not here")

@g.case("crashes")
def crashes():
    os._exit(3)

@g.metric("SIGINT at default_int_handler", unit="yes")
def sigint():
    return float(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


@pytest.fixture
def probe_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Group:
    name = f"bench_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    group: Group = importlib.import_module(name).g
    group.module = name
    group.validate()
    return group


def test_workers_measure_skip_and_survive_failures(probe_group: Group) -> None:
    """Each row in its own worker: failures and crashes are reported and the
    run goes on; missing modules skip; SIGINT is at Python's default handler
    in the workers even when the parent ignores it."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = measure(list(probe_group.cases.values()), rounds=2, budget=0.01, timeout=30)
    finally:
        signal.signal(signal.SIGINT, old)
    by_key = {r.case.key: r for r in run.results}
    assert by_key["fast"].values()[0] is not None
    assert by_key["slow"].values()[1] is not None
    assert by_key["missing"].skipped is not None
    assert "no_such_module_for_bench is not installed" in by_key["missing"].skipped
    assert by_key["skips"].skipped == "not here"
    assert by_key["fails"].errors == ["ValueError: boom"] * 2
    assert "exited (code 3)" in by_key["crashes"].errors[0]
    assert by_key["crashes"].rounds[1] is None  # a dead worker is not asked again
    assert by_key["sigint"].values() == [1.0, 1.0]
    assert run.sigint_default
    [table] = build(run.results)
    fast = next(row for row in table.rows if row.key == "fast")
    [(_, vs_slow)] = fast.comparisons
    assert vs_slow.summary is not None
    assert vs_slow.summary.median < 1


def test_quick_run_of_the_context_group(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` prints the rows, the ratios and the goal."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "2",
         "--only", "context.ctx_asyncio,context.ctx_plain,context.ctx_curio",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for label in [
        "current_context()  [asyncio task]",
        "vs sniffio.current_async_library()  [asyncio task]",
        "vs asyncio.get_running_loop()  [asyncio task]",
        "current_context()  [plain thread]",
        "vs asyncio.get_running_loop() raises, caught  [plain thread]",
    ]:
        assert label in text
    assert "<= 2 µs" in text
    doc = json.loads(out.read_text())
    assert doc["sigint_default_in_workers"] is True
    [group] = doc["groups"]
    rows = {row["key"]: row for row in group["rows"]}
    ctx = rows["ctx_asyncio"]
    assert ctx["status"] == "ok"
    assert [c["baseline"] for c in ctx["comparisons"]] == ["sniffio_asyncio", "loop_asyncio"]
    for comparison in ctx["comparisons"]:
        assert comparison["summary"]["min"] <= comparison["summary"]["median"]
        assert len(comparison["per_round"]) == 2
    assert ctx["goals"][0]["goal"] == "<= 2 µs"
    curio_ok = sys.version_info < (3, 12)
    assert rows["ctx_curio"]["status"] == ("ok" if curio_ok else "skipped")


def test_sync_generator_rows_inside_a_runtime_get_their_awaitables_awaited() -> None:
    events: list[str] = []

    trio = pytest.importorskip("trio")

    def row() -> Iterator[Callable[[], object]]:
        events.append("setup")
        yield lambda: trio.sleep(0)
        events.append("teardown")

    assert run_round(_case(row, inside="trio"), BUDGET)["value"] > 0
    assert events == ["setup", "teardown"]
