"""runtime-bridge doctor and explain."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import adapters
from bridge._cli import collect_doctor, main, render_doctor


def test_doctor_reports_every_runtime() -> None:
    reports = {r.name: r for r in collect_doctor()}
    assert list(reports) == ["asyncio", "asyncio+uvloop", "trio", "curio", "pet_executor"]
    for name in adapters.available():
        assert reports[name].usable, reports[name]
        assert reports[name].version
        assert reports[name].smoke_s is not None
    for report in reports.values():
        if not report.usable:
            assert report.reason
    text = render_doctor(list(reports.values()))
    assert "usable here: " in text
    for name in reports:
        assert name in text


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in data} >= {"asyncio", "trio"}


def test_explain_lists_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain"]) == 0
    assert "BRG001  BlockingInLoopError" in capsys.readouterr().out
    assert main(["explain", "BRG004"]) == 0
    assert capsys.readouterr().out.startswith("BRG004: DeadlockError")


def test_explain_unknown_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "BRG999"]) == 2
    assert "unknown error code 'BRG999'" in capsys.readouterr().err


def test_python_dash_m_bridge() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "doctor"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("runtime-bridge doctor")
    assert "usable here: asyncio" in out.stdout
