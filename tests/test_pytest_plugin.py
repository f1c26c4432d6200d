"""bridge.pytest_plugin, proved with pytester: each scenario is a small test
suite run by pytest in a subprocess (the plugin keeps one run per runtime
per process, so each scenario gets a process of its own)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from bridge._pytest._variants import VARIANTS
from tests.docs_examples import ROOT, python_blocks

AVAILABLE = [v.name for v in VARIANTS if v.unavailable_reason() is None]
UNAVAILABLE = {v.name: v.unavailable_reason() for v in VARIANTS if v.unavailable_reason()}
ALL = [v.name for v in VARIANTS]

_INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


def _suite(pytester: pytest.Pytester, source: str, *, ini: str = "") -> None:
    pytester.makeini(_INI.format(extra=textwrap.dedent(ini)))
    pytester.makepyfile(test_suite=textwrap.dedent(source))


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args)


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def _expect(**counts: int) -> dict[str, int]:
    """parseoutcomes()'s answer for these counts (zeros left out)."""
    return {name: n for name, n in counts.items() if n}


def _assert_no_failures(result: pytest.RunResult) -> None:
    outcomes = _outcomes(result)
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()


# -- ids, narrowing, skips -------------------------------------------------------------


def test_marked_test_runs_once_per_variant_with_its_id(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest

        @pytest.mark.bridge
        async def test_it():
            pass

        async def test_pair(bridge_pair):
            pass
        """,
    )
    result = _run(pytester, "--collect-only", "-q")
    out = result.stdout.str()
    for name in ALL:
        assert f"test_suite.py::test_it[{name}]" in out
        for guest in ALL:
            assert f"test_suite.py::test_pair[{name}->{guest}]" in out
    assert f"{len(ALL) + len(ALL) ** 2} tests collected" in out


def test_marker_and_option_narrow_the_variants(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest

        @pytest.mark.bridge(runtimes=["trio", "pet_executor"])
        async def test_narrow():
            pass

        @pytest.mark.bridge(runtimes=["asyncio"], guests=["trio"])
        async def test_pair(bridge_pair):
            pass

        @pytest.mark.bridge
        async def test_all():
            pass
        """,
    )
    out = _run(pytester, "--collect-only", "-q").stdout.str()
    assert "test_narrow[trio]" in out
    assert "test_narrow[pet_executor]" in out
    assert "test_narrow[asyncio]" not in out
    assert "test_pair[asyncio->trio]" in out
    assert "test_pair[trio->" not in out
    out = _run(pytester, "--collect-only", "-q", "--bridge-runtimes=pet_executor").stdout.str()
    assert "test_all[pet_executor]" in out
    assert "test_all[asyncio]" not in out
    assert "test_narrow[pet_executor]" in out
    assert "test_narrow[trio]" not in out
    result = _run(pytester, "--bridge-runtimes=tokio")
    result.stderr.fnmatch_lines(["*unknown runtime variant 'tokio'*"])


def test_unavailable_runtime_is_collected_and_skipped_with_its_reason(
    pytester: pytest.Pytester,
) -> None:
    # The registry is told trio is unusable here, as curio is on Python 3.12+.
    pytester.makeconftest(
        """
        from bridge import _registry

        _registry._PYTHON_LIMITS["trio"] = ((3, 0), "pretend trio needs Python 3.0")
        """
    )
    _suite(
        pytester,
        """
        import pytest

        @pytest.mark.bridge
        async def test_it():
            pass
        """,
    )
    result = _run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*test_it[[]trio[]] SKIPPED (runtime 'trio' is unavailable*",
            "SKIPPED [[]1[]] *runtime 'trio' is unavailable: pretend trio needs Python 3.0*",
        ]
    )
    for name, reason in UNAVAILABLE.items():
        assert reason is not None
        result.stdout.fnmatch_lines([f"*test_it[[]{name}[]] SKIPPED ({reason[:20]}*"])
    unavailable = len(set(UNAVAILABLE) | {"trio"})
    assert _outcomes(result) == {"passed": len(ALL) - unavailable, "skipped": unavailable}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="curio is available before 3.12")
def test_curio_is_skipped_with_the_registry_reason_on_new_pythons(
    pytester: pytest.Pytester,
) -> None:
    _suite(pytester, "import pytest\n\n@pytest.mark.bridge\nasync def test_it():\n    pass\n")
    result = _run(pytester, "-v")
    result.stdout.fnmatch_lines(
        ["*test_it[[]curio[]] SKIPPED*", "SKIPPED*imports on Python 3.10 and 3.11 only*"]
    )


# -- fixtures and contextvars --------------------------------------------------------------

_SCOPES_CONFTEST = """
import contextvars, json, os
import pytest
import sniffio

VAR = contextvars.ContextVar("VAR", default="unset")
LOG = os.environ["BRIDGE_LOG"]

def log(*event):
    with open(LOG, "a") as f:
        f.write(json.dumps(event) + "\\n")

@pytest.fixture(scope="session")
async def session_res(bridge_runtime):
    log("session", bridge_runtime, sniffio.current_async_library())
    VAR.set("session:" + bridge_runtime)
    yield object()
    log("session-end", bridge_runtime, sniffio.current_async_library())

@pytest.fixture(scope="module")
async def module_res(session_res, bridge_runtime):
    log("module", bridge_runtime, sniffio.current_async_library())
    yield object()

@pytest.fixture
async def function_res(module_res):
    log("function", sniffio.current_async_library())
    return object()
"""

_SCOPES = """
import pytest
import sniffio
from conftest import VAR

SEEN = {}

@pytest.mark.bridge
async def test_a(session_res, module_res, function_res, bridge_runtime):
    assert VAR.get() == "session:" + bridge_runtime
    assert sniffio.current_async_library() == bridge_runtime.split("+")[0]
    SEEN.setdefault(bridge_runtime, []).append((session_res, module_res, function_res))

@pytest.mark.bridge
async def test_b(session_res, module_res, function_res, bridge_runtime):
    assert VAR.get() == "session:" + bridge_runtime
    (s, m, f), = SEEN[bridge_runtime]
    assert s is session_res and m is module_res and f is not function_res
"""


def test_fixture_scopes_share_the_run_on_every_runtime(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("BRIDGE_LOG", str(log))
    pytester.makeini(_INI.format(extra=""))
    pytester.makeconftest(_SCOPES_CONFTEST)
    pytester.makepyfile(test_one=_SCOPES, test_two=_SCOPES)
    result = _run(pytester)
    assert _outcomes(result).get("passed") == 4 * len(AVAILABLE), result.stdout.str()
    events = [tuple(json.loads(line)) for line in log.read_text().splitlines()]
    for name in AVAILABLE:
        lib = name.split("+")[0]
        assert events.count(("session", name, lib)) == 1
        assert events.count(("session-end", name, lib)) == 1
        assert events.count(("module", name, lib)) == 2  # one per module
    assert sum(e[0] == "function" for e in events) == 4 * len(AVAILABLE)


def test_contextvars_flow_from_fixture_to_test(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import contextvars
        import pytest

        VAR = contextvars.ContextVar("VAR", default="unset")
        OTHER = contextvars.ContextVar("OTHER", default="unset")

        @pytest.fixture
        async def outer():
            VAR.set("outer")
            yield
            assert VAR.get() == "outer"

        @pytest.fixture
        async def inner(outer):
            assert VAR.get() == "outer"
            OTHER.set("inner")

        @pytest.mark.bridge
        async def test_sees_both(inner):
            assert (VAR.get(), OTHER.get()) == ("outer", "inner")

        @pytest.mark.bridge
        def test_sync_face_sees_them_too(inner, bridge_runtime):
            assert (VAR.get(), OTHER.get()) == ("outer", "inner")
        """,
    )
    assert _outcomes(_run(pytester)).get("passed") == 2 * len(AVAILABLE)


# -- timeouts ------------------------------------------------------------------------


def test_timeout_cancels_then_fails_with_threads_and_tasks(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest
        import adapters
        import bridge

        async def wait_forever_here():
            await adapters.get(bridge.current_runtime()).await_future(
                __import__("concurrent.futures").futures.Future()
            )

        CLEANED = []

        @pytest.mark.bridge(timeout=0.3)
        async def test_hangs(bridge_runtime):
            try:
                await wait_forever_here()
            finally:
                CLEANED.append(bridge_runtime)

        @pytest.mark.bridge
        async def test_cleanup_ran(bridge_runtime):
            assert bridge_runtime in CLEANED
        """,
        ini="bridge_timeout = 30",
    )
    result = _run(pytester)
    skipped = 2 * len(UNAVAILABLE)
    assert _outcomes(result) == _expect(
        failed=len(AVAILABLE), passed=len(AVAILABLE), skipped=skipped
    )
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "test test_hangs[[]*[]] timed out after 0.3 s: it was cancelled at the deadline, "
            "and its cleanup ran.",
            "--- at the deadline of test test_hangs[[]*[]]: * threads ---",
        ]
    )
    assert "thread 'MainThread'" in out
    assert "in wait_forever_here" in out  # the task's await chain


def test_ini_timeout_and_a_test_that_ignores_cancellation(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import time
        import pytest

        @pytest.mark.bridge(runtimes=["asyncio", "trio"])
        async def test_blocks_its_loop():
            time.sleep(30)  # blocking: cancellation cannot reach it
        """,
        ini="bridge_timeout = 0.3",
    )
    result = _run(pytester)
    wanted = len({"asyncio", "trio"} & set(AVAILABLE))
    assert _outcomes(result) == {"failed": wanted}
    out = result.stdout.str()
    assert "was still running 2.0 s later" in out
    assert "s after cancelling test test_blocks_its_loop" in out
    assert "in test_blocks_its_loop" in out


# -- leaks ---------------------------------------------------------------------------


def test_each_kind_of_leak_fails_the_test_naming_it(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import os, threading
        import pytest
        import bridge
        from pet_executor import PetExecutor

        STOP = threading.Event()

        @pytest.mark.bridge(runtimes=["asyncio"])
        async def test_thread():
            threading.Thread(target=STOP.wait, name="left-running", daemon=True).start()

        @pytest.mark.bridge(runtimes=["asyncio"])
        def test_pet():
            pet = PetExecutor("asyncio", name="forgotten-pet")
            pet.call(bridge.spawn_blocking, int)
            test_pet.pet = pet

        @pytest.mark.bridge(runtimes=["asyncio"])
        async def test_fd():
            test_fd.fd = os.open(os.devnull, os.O_RDONLY)

        async def forever(sleep):
            await sleep(3600)

        @pytest.mark.bridge
        async def test_task(bridge_runtime):
            if bridge_runtime.startswith("asyncio"):
                import asyncio
                test_task.keep = asyncio.get_running_loop().create_task(forever(asyncio.sleep))
            elif bridge_runtime == "trio":
                import trio
                trio.lowlevel.spawn_system_task(forever, trio.sleep)
            elif bridge_runtime == "curio":
                import curio
                await curio.spawn(forever, curio.sleep, daemon=True)
            else:
                import pet_executor
                pet_executor.spawn(forever(pet_executor.sleep)).detach()

        @pytest.mark.bridge(leak_check=False)
        async def test_opted_out():
            test_opted_out.fd = os.open(os.devnull, os.O_RDONLY)

        def test_zz_cleanup():
            STOP.set()
            test_pet.pet.close()
        """,
    )
    result = _run(pytester)
    out = result.stdout.str()
    assert "thread 'left-running' is still running" in out
    assert "<PetExecutor forgotten-pet runtime='asyncio' running> was not closed" in out
    assert f"({os.devnull}) is still open" in out
    for name in AVAILABLE:
        assert f"ERROR at teardown of test_task[{name}]" in out
    assert "in forever" in out
    assert "is still pending" in out
    outcomes = _outcomes(result)
    assert outcomes["errors"] == 3 + len(AVAILABLE), out
    assert outcomes["passed"] == 4 + len(AVAILABLE) + len(AVAILABLE)


def test_warm_runs_and_wider_fixtures_do_not_count_as_leaks(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import os, threading
        import pytest
        import adapters
        import bridge

        STOP = threading.Event()

        @pytest.fixture(scope="session")
        def service():
            thread = threading.Thread(target=STOP.wait, name="session-service")
            thread.start()
            fd = os.open(os.devnull, os.O_RDONLY)
            yield
            STOP.set()
            thread.join()
            os.close(fd)

        @pytest.fixture(scope="module")
        async def background(bridge_runtime):
            yield

        @pytest.mark.bridge
        async def test_uses_everything(service, background, bridge_runtime):
            # the library's caches: its worker threads and a shared pet
            await bridge.spawn_blocking(int)
            other = "pet_executor" if bridge_runtime != "pet_executor" else "asyncio"
            await adapters.call(other, bridge.spawn_blocking, int)

        async def test_pairs(bridge_pair, service):
            async def answer():
                return 42
            assert await bridge_pair.call(answer) == 42
        """,
    )
    result = _run(pytester)
    passed = len(AVAILABLE) + len(AVAILABLE) ** 2
    skipped = len(ALL) + len(ALL) ** 2 - passed
    assert _outcomes(result) == _expect(passed=passed, skipped=skipped), result.stdout.str()


# -- coexistence ------------------------------------------------------------------------

_THEIRS = {
    "asyncio": """
@pytest.mark.asyncio
async def test_pytest_asyncio():
    assert sniffio.current_async_library() == "asyncio"
""",
    "trio": """
@pytest.mark.trio
async def test_pytest_trio(nursery):
    assert sniffio.current_async_library() == "trio"
""",
    "anyio": """
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

@pytest.mark.anyio
async def test_anyio(anyio_backend):
    assert sniffio.current_async_library() == anyio_backend
""",
}

_OURS = """
import pytest
import sniffio

@pytest.fixture
async def ours(bridge_runtime):
    yield sniffio.current_async_library()

@pytest.mark.bridge(runtimes=["trio", "pet_executor"])
async def test_bridge(ours, bridge_runtime):
    assert sniffio.current_async_library() == ours == bridge_runtime
"""


@pytest.mark.parametrize(
    ("ini", "theirs", "header"),
    [
        # strict modes: all four plugins in one suite
        ("", ["asyncio", "trio", "anyio"], None),
        # an auto mode claims every async test: each beside ours alone
        (
            "asyncio_mode = auto",
            ["asyncio"],
            "*pytest-asyncio's asyncio_mode=auto claims every async test*stay bridge's",
        ),
        ("trio_mode = true", ["trio"], "*pytest-trio's trio_mode claims every async test*"),
    ],
)
def test_coexists_with_pytest_asyncio_pytest_trio_and_anyio(
    pytester: pytest.Pytester, ini: str, theirs: list[str], header: str | None
) -> None:
    _suite(pytester, _OURS + "".join(_THEIRS[name] for name in theirs), ini=ini)
    result = _run(pytester, "-v")
    if header is not None:
        result.stdout.fnmatch_lines([header])
    outcomes = _outcomes(result)
    _assert_no_failures(result)
    ours = len({"trio", "pet_executor"} & set(AVAILABLE))
    assert outcomes["passed"] == ours + len(theirs) + ("anyio" in theirs)


def test_two_auto_modes_are_refused_at_start_up(pytester: pytest.Pytester) -> None:
    _suite(
        pytester, "async def test_it():\n    pass\n", ini="bridge_mode = auto\nasyncio_mode = auto"
    )
    result = _run(pytester)
    result.stderr.fnmatch_lines(["*bridge_mode = auto and pytest-asyncio's asyncio_mode = auto*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_auto_mode_takes_unmarked_async_tests_but_not_others(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest

        async def test_unmarked():
            pass

        @pytest.mark.asyncio
        async def test_theirs():
            pass

        def test_sync():
            pass
        """,
        ini="bridge_mode = auto",
    )
    out = _run(pytester, "--collect-only", "-q").stdout.str()
    assert "test_unmarked[trio]" in out
    assert "test_theirs[" not in out
    assert "test_sync[" not in out


def test_a_test_marked_for_two_plugins_fails_clearly(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest

        @pytest.mark.bridge(runtimes=["asyncio"])
        @pytest.mark.asyncio
        async def test_both():
            pass
        """,
    )
    result = _run(pytester)
    result.stdout.fnmatch_lines(["*is a bridge test and also uses @pytest.mark.asyncio*"])


# -- pytest-xdist ------------------------------------------------------------------------


def test_xdist_workers_collect_the_same_and_group_by_runtime(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        import os
        from bridge import _registry

        # One worker finds trio unusable: collection must not change.
        if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
            _registry._PYTHON_LIMITS["trio"] = ((3, 0), "pretend")
        """
    )
    log = tmp_path / "workers.txt"
    monkeypatch.setenv("BRIDGE_LOG", str(log))
    _suite(
        pytester,
        """
        import os
        import pytest

        @pytest.mark.bridge(runtimes=["asyncio", "pet_executor"])
        @pytest.mark.parametrize("n", range(6))
        async def test_it(n, bridge_runtime):
            with open(os.environ["BRIDGE_LOG"], "a") as f:
                f.write(f"{bridge_runtime} {os.environ['PYTEST_XDIST_WORKER']}\\n")

        @pytest.mark.bridge
        async def test_everywhere():
            pass
        """,
        ini="bridge_group_by_runtime = true",
    )
    result = _run(pytester, "-n", "2")
    _assert_no_failures(result)
    workers: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        runtime, worker = line.split()
        workers.setdefault(runtime, set()).add(worker)
    assert all(len(found) == 1 for found in workers.values()), workers


# -- the grid ---------------------------------------------------------------------------


def test_summary_grid_counts_by_host_and_guest(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
        import pytest

        @pytest.mark.bridge(runtimes=["asyncio", "pet_executor"], guests=["pet_executor"])
        async def test_pair(bridge_pair):
            assert bridge_pair.host != "asyncio"

        @pytest.mark.bridge(runtimes=["asyncio", "pet_executor"])
        async def test_alone():
            pytest.skip("nothing to do")
        """,
    )
    result = _run(pytester)
    result.stdout.fnmatch_lines(
        [
            "*bridge: outcomes by host (rows) and guest (columns)*",
            "host \\ guest  (alone)  pet_executor",
            "asyncio       0/0/1    0/1/0",
            "pet_executor  0/0/1    1/0/0",
            "cells: passed/failed/skipped",
        ]
    )


# -- the guide's example -------------------------------------------------------------------


def test_the_testing_guide_example_passes_on_every_runtime(pytester: pytest.Pytester) -> None:
    blocks = python_blocks("docs/testing.md")
    assert blocks
    _suite(pytester, "\n\n".join(blocks))
    result = _run(pytester)
    outcomes = _outcomes(result)
    _assert_no_failures(result)
    assert outcomes["passed"] >= 2 * len(AVAILABLE)
    assert (ROOT / "docs/index.md").read_text().count("(testing.md)") == 1
