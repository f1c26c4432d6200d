"""The worker process of one row: ``python -m benchmarks._worker MODULE GROUP KEY``
(MODULE: the dotted name of the module that declares the group).

Protocol: JSON lines. The worker first answers ``{"status": "ready"}``, or
``"skip"`` with a reason, or ``"error"``; then, for each ``{"cmd": "round",
"budget": seconds}`` read from stdin, it runs one round and answers with its
result. End of input (or ``{"cmd": "exit"}``) ends the worker.

The answers go to the original stdout; the worker points its own stdout at
stderr, so a row that prints cannot corrupt the protocol.

SIGINT: Python's default is ``signal.default_int_handler`` (which raises
``KeyboardInterrupt``), installed at start-up only when SIGINT is not
ignored, and a parent started in the background may pass it on ignored. The
worker installs it explicitly, and again before each round if a row left
something else in place, because asyncio.Runner, trio and the bridge's own
Ctrl-C handling install theirs only over the default one: timings must see
what a real program sees.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import IO, Any

from ._api import Case, Group, Skip
from ._timing import run_round

__all__ = ("find_case", "main", "requirement_missing")

# Import names whose distribution is spelled differently.
_DISTRIBUTIONS = {"trio_asyncio": "trio-asyncio", "pet_executor": "runtime-bridge"}


def requirement_missing(name: str) -> str | None:
    """Why ``name`` cannot be imported here, or None when it imports."""
    if name == "curio" and sys.version_info >= (3, 12):
        return (
            "curio 1.6 (its last release) imports on Python 3.10 and 3.11 only; "
            f"this is Python {sys.version_info.major}.{sys.version_info.minor}"
        )
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name.partition(".")[0]:
            return f"{name} does not import: {exc}"
        dist = _DISTRIBUTIONS.get(name, name)
        return f"{name} is not installed (pip install {dist}; `make bench` installs its group)"
    except Exception as exc:
        return f"{name} does not import on this Python: {type(exc).__name__}: {exc}"
    return None


def find_case(module: str, group: str, key: str) -> Case:
    """The row ``key`` of the group named ``group`` in the module ``module``."""
    mod = importlib.import_module(module)
    for value in vars(mod).values():
        if isinstance(value, Group) and value.name == group:
            return value.cases[key]
    raise LookupError(f"{module} has no group named {group!r}")


def _error(exc: BaseException) -> dict[str, Any]:
    text = f"{type(exc).__name__}: {exc}".strip().removesuffix(":")
    return {"status": "error", "error": text, "traceback": _row_traceback(exc)}


def _row_traceback(exc: BaseException) -> str:
    # The harness's own frames say nothing about the row: leave them out.
    te = traceback.TracebackException.from_exception(exc)
    own = os.path.dirname(os.path.abspath(__file__))
    kept = [
        f
        for f in te.stack
        if not (
            os.path.dirname(os.path.abspath(f.filename)) == own
            and os.path.basename(f.filename).startswith("_")
        )
    ]
    te.stack = traceback.StackSummary.from_list(kept)
    return "".join(te.format())


def _serve(case: Case, proto: IO[str]) -> None:
    def answer(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    for name in case.all_requires:
        reason = requirement_missing(name)
        if reason is not None:
            answer({"status": "skip", "reason": reason})
            return
    answer({"status": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("cmd") != "round":
            return
        sigint_default = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if not sigint_default:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        t0 = time.perf_counter()
        try:
            result = {"status": "ok", **run_round(case, float(command["budget"]))}
        except Skip as exc:
            result = {"status": "skip", "reason": str(exc) or "skipped by the row"}
        except BaseException as exc:
            result = _error(exc)
        result["wall"] = time.perf_counter() - t0
        # Checked where the round starts: the handler a program would find.
        result["sigint_default"] = sigint_default
        answer(result)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        module, group, key = argv
        try:
            case = find_case(module, group, key)
        except BaseException as exc:
            proto.write(json.dumps(_error(exc)) + "\n")
        else:
            _serve(case, proto)
    finally:
        proto.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        # Threads, loops or pets a row left behind must not hold the exit.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
