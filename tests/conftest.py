"""Shared fixtures: one parametrisation over the runtimes (and loop variants)."""

from __future__ import annotations

import pytest

from tests.runtimes import Driver, driver_params


@pytest.fixture(params=driver_params())
def driver(request: pytest.FixtureRequest) -> Driver:
    """Each available runtime variant in turn; unavailable ones are collected
    and skipped with their reason."""
    d: Driver = request.param
    return d
