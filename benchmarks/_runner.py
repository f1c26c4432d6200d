"""Finding the rows, and measuring them in interleaved, shuffled rounds.

Every selected row gets a persistent worker process of its own (all started
at once, so their imports overlap). Each round then asks every live row for
one measurement, one row at a time, in a fresh random order: a slow phase of
a shared machine hits all rows alike instead of whichever ran at a bad moment,
and per-round ratios pair measurements taken moments apart.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._api import Case, Group

__all__ = ("BrokenModule", "RowResult", "Run", "Worker", "discover", "measure", "select")

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BrokenModule:
    """A ``bench_*`` module that could not be imported or declares a bad row."""

    module: str
    error: str
    traceback: str


def discover() -> tuple[list[Group], list[BrokenModule]]:
    """Import every ``benchmarks/bench_*.py``; return their groups (in module
    order, then declaration order) and the modules that are broken, which
    the run reports instead of stopping."""
    groups: list[Group] = []
    broken: list[BrokenModule] = []
    names: dict[str, Group] = {}
    for info in sorted(pkgutil.iter_modules([str(_PACKAGE_DIR)]), key=lambda i: i.name):
        if not info.name.startswith("bench_"):
            continue
        try:
            module = importlib.import_module(f"benchmarks.{info.name}")
            found = []
            for value in vars(module).values():
                if not isinstance(value, Group) or any(value is g for g in groups):
                    continue
                if value.name in names:
                    raise ValueError(
                        f"two groups are named {value.name!r} "
                        f"({names[value.name].module} and {module.__name__})"
                    )
                value.validate()
                found.append(value)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            broken.append(BrokenModule(info.name, error, traceback.format_exc()))
            continue
        for group in found:
            group.module = module.__name__
            names[group.name] = group
            groups.append(group)
    return groups, broken


def select(groups: Iterable[Group], only: Sequence[str] = ()) -> list[Case]:
    """The rows matching any of ``only`` (substrings of ``group.key``, of a
    row's label or of its group's title), plus the baselines they are
    compared with; all rows when ``only`` is empty."""
    every = [case for group in groups for case in group.cases.values()]
    if not only:
        return every
    chosen = {
        id(case)
        for case in every
        if any(s in case.full_key or s in case.label or s in case.group.title for s in only)
    }
    pending = [case for case in every if id(case) in chosen]
    while pending:
        case = pending.pop()
        for key in case.baselines():
            baseline = case.group.cases[key]
            if id(baseline) not in chosen:
                chosen.add(id(baseline))
                pending.append(baseline)
    return [case for case in every if id(case) in chosen]


class Worker:
    """The worker process of one row, spoken to in JSON lines (see ``_worker``)."""

    def __init__(self, case: Case, *, python: str = sys.executable) -> None:
        if case.group.module is None:
            raise ValueError(f"group {case.group.name!r} was not found by discover()")
        self.case = case
        # Kept open for the worker's life: the last lines tell why it died.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = dict(os.environ)
        root = str(_PACKAGE_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # A session of its own: a Ctrl-C at the terminal reaches only the
        # parent, which then stops the workers itself.
        self.process = subprocess.Popen(
            [python, "-m", "benchmarks._worker", case.group.module, case.group.name, case.key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
            encoding="utf-8",
            bufsize=1,
            start_new_session=True,
        )
        self._answers: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name=f"bench-read-{case.key}", daemon=True).start()
        self.alive = True

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._answers.put(line)
        self._answers.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        """The worker's next answer; an ``error`` answer if it dies or times out."""
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"status": "error", "error": f"no answer within {timeout:.0f} s; stopped it"}
        if line is None:
            self.alive = False
            return {"status": "error", "error": self._death()}
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            return {"status": "error", "error": f"unreadable answer from the worker: {line!r}"}
        return answer

    def round(self, budget: float, timeout: float) -> dict[str, Any]:
        """Run one round in the worker and return its answer."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps({"cmd": "round", "budget": budget}) + "\n")
            stdin.flush()
        except OSError:
            self.alive = False
            return {"status": "error", "error": self._death()}
        return self.receive(timeout)

    def _death(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        tail = lines[-1] if lines else "(nothing on stderr)"
        return f"the worker exited (code {code}): {tail}"

    def kill(self) -> None:
        self.alive = False
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """End the worker: end of input, then a kill if it does not exit."""
        self.alive = False
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


@dataclass
class RowResult:
    """What the rounds of one row gave: one raw answer per round (None: not run)."""

    case: Case
    rounds: list[dict[str, Any] | None]
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    active: bool = True

    def values(self) -> list[float | None]:
        """The row's value in each round, None where the round did not succeed."""
        return [r["value"] if r is not None and r["status"] == "ok" else None for r in self.rounds]

    @property
    def failed_rounds(self) -> int:
        return sum(1 for r in self.rounds if r is not None and r["status"] == "error")


@dataclass
class Run:
    """Every row's results, and how the run went."""

    results: list[RowResult]
    rounds: int
    seed: int
    seconds: float
    interrupted: bool = False
    sigint_default: bool = True


def _budget(case: Case, default: float, scale: float) -> float:
    declared = case.budget if case.budget is not None else case.group.budget
    return (declared if declared is not None else default) * scale


def measure(
    cases: Sequence[Case],
    *,
    rounds: int,
    budget: float,
    scale: float = 1.0,
    seed: int | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] = lambda message: None,
) -> Run:
    """Measure ``cases`` in ``rounds`` interleaved, shuffled rounds."""
    if seed is None:
        seed = random.randrange(2**32)
    rng = random.Random(seed)
    results = {id(case): RowResult(case, [None] * rounds) for case in cases}
    workers: dict[int, Worker] = {}
    run = Run(list(results.values()), rounds, seed, 0.0)
    t_start = time.perf_counter()

    def fail(result: RowResult, answer: dict[str, Any], where: str) -> None:
        if not result.errors:
            detail = answer.get("traceback") or answer["error"]
            log(f"error in {result.case.full_key} ({where}):\n{detail.rstrip()}")
        result.errors.append(answer["error"])

    try:
        for case in cases:
            workers[id(case)] = Worker(case)
        for case in cases:
            result, worker = results[id(case)], workers[id(case)]
            answer = worker.receive(timeout)
            if answer["status"] != "ready":
                result.active = False
                worker.close()
                if answer["status"] == "skip":
                    result.skipped = answer["reason"]
                else:
                    fail(result, answer, "start-up")
        for index in range(rounds):
            order = [case for case in cases if results[id(case)].active]
            if not order:
                break
            rng.shuffle(order)
            t0 = time.perf_counter()
            for case in order:
                result, worker = results[id(case)], workers[id(case)]
                answer = worker.round(
                    _budget(case, budget, scale), timeout + 20 * _budget(case, budget, scale)
                )
                result.rounds[index] = answer
                run.sigint_default &= answer.get("sigint_default", True)
                if answer["status"] == "skip":
                    result.skipped = answer["reason"]
                    result.active = False
                elif answer["status"] == "error":
                    fail(result, answer, f"round {index + 1}")
                    # A dead or hung worker would fail every later round too.
                    result.active = worker.alive
            log(
                f"round {index + 1}/{rounds}: {len(order)} rows in {time.perf_counter() - t0:.1f} s"
            )
    except KeyboardInterrupt:
        run.interrupted = True
        log("interrupted: reporting the rounds measured so far")
    finally:
        for worker in workers.values():
            worker.close()
    run.seconds = time.perf_counter() - t_start
    return run
