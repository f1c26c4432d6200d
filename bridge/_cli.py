"""The diagnostics CLI: ``runtime-bridge`` (also ``python -m bridge``).

Each command collects plain data first and renders it second, so the data is
tested without a terminal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

from ._errors import EXPLANATIONS, BridgeError, explain
from ._registry import RUNTIMES, get, unavailable_reason

__all__ = ("RuntimeReport", "collect_doctor", "main", "render_doctor")


@dataclass
class RuntimeReport:
    """What ``doctor`` found about one runtime (or loop option)."""

    name: str
    usable: bool
    version: str | None = None
    reason: str | None = None
    fix: str | None = None
    #: Seconds a no-op run took here, when it ran.
    smoke_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _installed_version(dist: str) -> str | None:
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return None


async def _noop() -> None:
    return None


def _smoke(run: Callable[[], object]) -> tuple[float | None, str | None]:
    start = time.perf_counter()
    try:
        run()
    except Exception as exc:  # the report says why, instead of crashing
        return None, f"a no-op run failed: {type(exc).__name__}: {exc}"
    return time.perf_counter() - start, None


def _runtime_report(name: str) -> RuntimeReport:
    error: BridgeError | None = unavailable_reason(name)
    if error is None:
        try:
            adapter = get(name)
        except BridgeError as exc:
            error = exc
    if error is not None:
        fix = error.fixes_used[0].after if error.fixes_used else None
        version = _installed_version(name) if name in ("trio", "curio") else None
        return RuntimeReport(name, usable=False, version=version, reason=error.what, fix=fix)
    elapsed, failure = _smoke(lambda: adapter.run(_noop))
    return RuntimeReport(
        name,
        usable=failure is None,
        version=adapter.version(),
        reason=failure,
        smoke_s=elapsed,
    )


def _uvloop_report() -> RuntimeReport:
    name = "asyncio+uvloop"
    if sys.platform == "win32":
        return RuntimeReport(name, usable=False, reason="uvloop does not support Windows.")
    if importlib.util.find_spec("uvloop") is None:
        return RuntimeReport(
            name,
            usable=False,
            reason="uvloop is not installed.",
            fix="pip install 'runtime-bridge[uvloop]'",
        )
    import uvloop

    elapsed, failure = _smoke(lambda: get("asyncio").run(_noop, loop_factory=uvloop.new_event_loop))
    return RuntimeReport(
        name,
        usable=failure is None,
        version=_installed_version("uvloop"),
        reason=failure,
        smoke_s=elapsed,
        notes=['a loop option of runtime "asyncio": loop_factory=uvloop.new_event_loop'],
    )


def collect_doctor() -> list[RuntimeReport]:
    """Every runtime and loop option: installed, usable here, and if not, why."""
    reports = [_runtime_report(name) for name in RUNTIMES]
    reports.insert(1, _uvloop_report())
    return reports


def render_doctor(reports: Sequence[RuntimeReport]) -> str:
    py = sys.version.split()[0]
    lines = [f"runtime-bridge doctor (Python {py}, {sys.platform})", ""]
    width = max(len(r.name) for r in reports)
    for r in reports:
        mark = "ok " if r.usable else "-- "
        version = r.version or "not installed"
        detail = f"no-op run {r.smoke_s * 1e3:.1f} ms" if r.smoke_s is not None else ""
        lines.append(f"  {mark}{r.name:<{width}}  {version:<14} {detail}".rstrip())
        for note in r.notes:
            lines.append(f"       {'':<{width}}  {note}")
        if not r.usable:
            lines.append(f"       {'':<{width}}  why: {r.reason}")
            if r.fix:
                lines.append(f"       {'':<{width}}  fix: {r.fix}")
    usable = [r.name for r in reports if r.usable]
    lines += ["", f"usable here: {', '.join(usable)}"]
    return "\n".join(lines)


def _cmd_doctor(args: argparse.Namespace) -> int:
    reports = collect_doctor()
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        print(render_doctor(reports))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    if args.code is None:
        for code, (name, _) in sorted(EXPLANATIONS.items()):
            print(f"{code}  {name}")
        return 0
    try:
        print(explain(args.code))
    except KeyError:
        known = ", ".join(sorted(EXPLANATIONS))
        print(f"unknown error code {args.code!r}; the codes are: {known}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runtime-bridge",
        description="Diagnostics for code that mixes sync and async, across runtimes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser("doctor", help="which runtimes are installed and usable here")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of text")
    doctor.set_defaults(func=_cmd_doctor)
    explain_cmd = commands.add_parser("explain", help="the long form of an error code")
    explain_cmd.add_argument("code", nargs="?", help="e.g. BRG001; none lists every code")
    explain_cmd.set_defaults(func=_cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result: int = args.func(args)
    return result
