"""Shared fixtures: one parametrisation over the runtimes (and loop variants),
made by the project's own pytest plugin (bridge.pytest_plugin)."""

from __future__ import annotations

import pytest

from bridge.pytest_plugin import BridgePair
from tests.runtimes import DRIVERS, Driver

# tests/test_pytest_plugin.py runs small suites under the plugin.
pytest_plugins = ["pytester"]

_BY_ID = {d.id: d for d in DRIVERS}


@pytest.fixture
def driver(bridge_runtime: str) -> Driver:
    """Each runtime variant in turn (ids ``[asyncio]``, ``[asyncio+uvloop]``,
    ``[trio]``, ``[curio]``, ``[pet_executor]``): the plugin parametrises
    ``bridge_runtime``, collects unavailable variants and skips them with
    their reason, and checks each test for leaks."""
    return _BY_ID[bridge_runtime]


@pytest.fixture
def host(bridge_pair: BridgePair) -> Driver:
    """The host of a host x guest pairing test (ids ``[asyncio->curio]``);
    the plugin parametrises ``bridge_pair`` over every pairing."""
    return _BY_ID[bridge_pair.host]


@pytest.fixture
def guest(bridge_pair: BridgePair) -> Driver:
    """The guest of a pairing test; see ``host``."""
    return _BY_ID[bridge_pair.guest]
