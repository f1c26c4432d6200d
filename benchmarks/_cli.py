"""``python -m benchmarks``: options, the run, the report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import _report
from ._api import Case
from ._runner import discover, measure, select

__all__ = ("main",)

DEFAULT_ROUNDS = 5
DEFAULT_BUDGET = 0.25
QUICK_ROUNDS = 3
QUICK_SCALE = 0.08


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Time runtime-bridge against its peers: every row in its own worker process, "
            "in interleaved, shuffled rounds; print medians and ratios per group."
        ),
    )
    ap.add_argument(
        "--only",
        metavar="SUBSTR[,..]",
        help="run the rows whose 'group.key', label or group title contains one of these "
        "(the baselines they are compared with come along)",
    )
    ap.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS})")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"small budgets (x{QUICK_SCALE:g}) and {QUICK_ROUNDS} rounds: a smoke run",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"time per row per round, unless a row declares its own (default {DEFAULT_BUDGET})",
    )
    ap.add_argument("--scale", type=float, help="multiply every budget by this")
    ap.add_argument("--seed", type=int, help="seed of the round orders (default: random)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a row that does not answer within this (plus 20x its budget) is stopped",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--list", action="store_true", help="list the groups and rows, and exit")
    ap.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a goal fails or a row fails",
    )
    return ap


def _list(cases: Sequence[Case]) -> str:
    lines: list[str] = []
    group = None
    for case in cases:
        if case.group is not group:
            group = case.group
            lines.append(f"{group.name}: {group.title}  ({group.module})")
        where = f"inside={case.inside}" if case.inside else "plain thread"
        extra = [where, *(f"goal {g.text}" for g in case.goals)]
        if case.requires:
            extra.append("requires " + ",".join(case.requires))
        lines.append(f"  {case.full_key:<28} {case.label}  [{'; '.join(extra)}]")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    only = [s.strip() for s in (args.only or "").split(",") if s.strip()]
    groups, broken = discover()
    for bad in broken:
        print(
            f"benchmarks/{bad.module}.py is broken, its rows are left out:\n{bad.traceback}",
            file=sys.stderr,
        )
    cases = select(groups, only)
    if not cases:
        print(f"no row matches --only {args.only!r}; see --list", file=sys.stderr)
        return 2
    if args.list:
        print(_list(cases))
        return 0
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log(f"measuring {len(cases)} rows, {rounds} rounds ...")
    run = measure(
        cases,
        rounds=rounds,
        budget=args.budget,
        scale=scale,
        seed=args.seed,
        timeout=args.timeout,
        log=log,
    )
    env = _report.environment()
    settings = {"budget": args.budget, "scale": scale, "only": only}
    tables = _report.build(run.results)
    print(_report.render(tables, _report.header_lines(run, env, settings)))
    print()
    print(_report.footer_line(run, tables))
    for bad in broken:
        print(f"BROKEN: benchmarks/{bad.module}.py ({bad.error}); its rows were left out")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(_report.as_json(run, tables, env, settings), fh, indent=2)
            fh.write("\n")
        print(f"JSON written to {args.json}")
    if run.interrupted:
        return 130
    counts = _report.summary(tables)
    if args.check and (counts["goals_failed"] or counts["failed"] or broken):
        return 1
    return 0
