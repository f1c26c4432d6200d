"""Code written for one runtime, run by block_on under another, gives
WrongRuntimeError naming both (best effort, from the first foreign error)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import bridge
from bridge._foreign import foreign_runtime
from bridge._registry import unavailable_reason


async def asyncio_code() -> None:
    import asyncio

    await asyncio.sleep(0.001)


async def asyncio_yield() -> None:
    import asyncio

    await asyncio.sleep(0)


async def trio_code() -> None:
    import trio

    await trio.sleep(0.001)


async def trio_checkpoint() -> None:
    import trio

    await trio.sleep(0)


async def curio_code() -> None:
    import curio

    await curio.sleep(0)


CODE: dict[str, list[Callable[[], Awaitable[None]]]] = {
    "asyncio": [asyncio_code, asyncio_yield],
    "trio": [trio_code, trio_checkpoint],
    "curio": [curio_code],
}


def _params() -> list[Any]:
    params = []
    for host, foreign in itertools.permutations(CODE, 2):
        for fn in CODE[foreign]:
            missing = [n for n in (host, foreign) if unavailable_reason(n) is not None]
            marks = (
                [pytest.mark.skip(reason=unavailable_reason(missing[0]).what)] if missing else []
            )  # type: ignore[union-attr]
            params.append(
                pytest.param(host, foreign, fn, id=f"{fn.__name__}-under-{host}", marks=marks)
            )
    return params


@pytest.mark.parametrize(("host", "foreign", "fn"), _params())
def test_foreign_code_names_both_runtimes(
    host: str, foreign: str, fn: Callable[[], Awaitable[None]]
) -> None:
    with pytest.raises(bridge.WrongRuntimeError) as info:
        bridge.block_on(fn, runtime=host)
    message = str(info.value)
    assert f"looks like {foreign} code, but it ran under {host}" in message
    assert f'runtime="{foreign}"' in message, "the fix routes the work to its runtime"
    assert info.value.__cause__ is not None
    assert info.value.code == "BRG003"


def test_ordinary_errors_are_left_alone() -> None:
    assert foreign_runtime(RuntimeError("something else"), "asyncio") is None
    assert foreign_runtime(ValueError("no running event loop"), "trio") is None
    assert foreign_runtime(RuntimeError("no running event loop"), "asyncio") is None

    async def fails() -> None:
        raise RuntimeError("an ordinary failure")

    with pytest.raises(RuntimeError, match="an ordinary failure") as info:
        bridge.block_on(fails)
    assert not isinstance(info.value, bridge.WrongRuntimeError)
