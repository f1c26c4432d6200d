"""The error family: codes, hierarchy, and messages that teach."""

from __future__ import annotations

import pickle
import re

import pytest

import bridge
from bridge._errors import _ALL, EXPLANATIONS, Fix, explain

ERRORS = [cls for cls in _ALL]


def test_codes_are_stable_and_unique() -> None:
    codes = [cls.code for cls in ERRORS]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"BRG\d{3}", c) for c in codes)
    assert bridge.BlockingInLoopError.code == "BRG001"
    assert set(EXPLANATIONS) == set(codes)


def test_hierarchy() -> None:
    panics = [
        bridge.BlockingInLoopError,
        bridge.NestedRuntimeError,
        bridge.WrongRuntimeError,
        bridge.DeadlockError,
        bridge.NoRuntimeError,
    ]
    for cls in panics:
        assert issubclass(cls, bridge.ContextPanic)
        assert issubclass(cls, RuntimeError)
    for cls in ERRORS:
        assert issubclass(cls, bridge.BridgeError)
    assert issubclass(bridge.RuntimeUnavailableError, LookupError)
    for cls in (bridge.PetClosedError, bridge.RunFinishedError, bridge.GuestCancelledError):
        assert not issubclass(cls, bridge.ContextPanic)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_message_says_what_why_fix_and_where_to_read_more(cls: type[bridge.BridgeError]) -> None:
    err = cls("Something specific happened.")
    text = str(err)
    assert text.startswith("Something specific happened.")
    assert "Why it matters: " in text
    assert text.endswith(f"More: runtime-bridge explain {cls.code}")
    if cls not in (bridge.BridgeError, bridge.ContextPanic):
        assert "before: " in text
        assert "after:  " in text


def test_instance_fixes_replace_the_defaults() -> None:
    err = bridge.NestedRuntimeError("x", fixes=(Fix("a()", "b()"),))
    assert "before: a()" in str(err)
    assert "asyncio.run(work())" not in str(err)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_pickles(cls: type[bridge.BridgeError]) -> None:
    err = cls("what")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert str(clone) == str(err)
    assert clone.what == "what"


@pytest.mark.parametrize("code", sorted(EXPLANATIONS))
def test_explain_has_the_long_form(code: str) -> None:
    text = explain(code)
    assert text.startswith(f"{code}: {EXPLANATIONS[code][0]}")
    assert EXPLANATIONS[code][1] in text
    assert explain(code.lower()) == text


def test_public_errors_show_their_public_module() -> None:
    assert bridge.BlockingInLoopError.__module__ == "bridge"
    assert bridge.current_context.__module__ == "bridge"
