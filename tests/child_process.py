"""A Python subprocess that a test talks to through its stdout lines and
signals: for exit, Ctrl-C and fork, which only a real process shows."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.docs_examples import ROOT


class Child:
    """A Python subprocess whose stdout lines the test waits for."""

    def __init__(self, code: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            # The child must start with SIGINT at Python's default handler.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self._partial = ""

    def expect(self, line: str, timeout: float = 20.0) -> None:
        # Read the raw pipe: a buffered reader could hold lines that select()
        # no longer reports.
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
            if not ready:
                self.fail(f"no line {line!r} within {timeout} s")
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                self.fail(f"the child ended before printing {line!r}")
            self._partial += chunk
            *complete, self._partial = self._partial.split("\n")
            self.lines += complete

    def fail(self, why: str) -> None:
        self.proc.kill()
        _, err = self.proc.communicate()
        pytest.fail(f"{why}; stdout so far: {self.lines}; stderr: {err}")

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.lines += (self._partial + out).splitlines()
        return self.proc.returncode, err
