"""The adapter registry: names, lazy imports, and unusable runtimes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

import adapters
from bridge import RuntimeUnavailableError
from bridge._registry import RUNTIMES, unavailable_reason


def test_known_runtimes_are_sniffio_names() -> None:
    assert RUNTIMES == ("asyncio", "trio", "curio", "pet_executor")
    assert set(adapters.available()) <= set(RUNTIMES)
    assert "asyncio" in adapters.available()


def test_unknown_runtime_lists_the_known_ones() -> None:
    with pytest.raises(LookupError) as info:
        adapters.get("tokio")
    message = str(info.value)
    assert "'tokio'" in message
    for name in RUNTIMES:
        assert repr(name) in message
    assert not isinstance(info.value, RuntimeUnavailableError)


def test_get_returns_one_adapter_per_runtime() -> None:
    for name in adapters.available():
        adapter = adapters.get(name)
        assert adapter is adapters.get(name)
        assert adapter.name == name
        assert isinstance(adapter, adapters.RuntimeAdapter)
        assert adapter.version()


def test_missing_runtime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trio" else real(name, *a)
    )
    error = unavailable_reason("trio")
    assert isinstance(error, RuntimeUnavailableError)
    assert isinstance(error, LookupError)
    assert "runtime-bridge[trio]" in str(error)
    assert str(error).rstrip().endswith("runtime-bridge explain BRG101")


def test_curio_availability_follows_the_python_version() -> None:
    """curio 1.6 imports on 3.10 and 3.11; on 3.12+ it is unavailable, with why."""
    if sys.version_info < (3, 12):
        assert "curio" in adapters.available()
        assert adapters.get("curio").name == "curio"
        return
    assert "curio" not in adapters.available()
    with pytest.raises(RuntimeUnavailableError) as info:
        adapters.get("curio")
    assert "3.10 and 3.11 only" in str(info.value)


def test_import_bridge_imports_no_optional_runtime() -> None:
    """Importing bridge and adapters, and asking where we are on a plain thread
    and inside asyncio, imports none of trio, curio, uvloop, greenlet."""
    code = textwrap.dedent(
        """
        import sys, asyncio
        import bridge, adapters
        bridge.current_context()
        adapters.available()
        async def main():
            return bridge.current_context()
        assert asyncio.run(main()).runtime == "asyncio"
        optional = ("trio", "curio", "uvloop", "greenlet", "anyio")
        print(sorted(m for m in optional if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
