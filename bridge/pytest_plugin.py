"""The cross-runtime test matrix: a pytest plugin (entry point ``pytest11``).

``@pytest.mark.bridge`` runs an async test once per runtime variant (ids
``[asyncio]``, ``[asyncio+uvloop]``, ``[trio]``, ``[curio]``,
``[pet_executor]``); a test that takes the ``bridge_pair`` fixture runs once
per host x guest pairing (``[asyncio->curio]``). Opt-in: tests without the
marker or the fixtures are left alone, unless ``bridge_mode = auto``.
docs/testing.md is the guide; ``bridge._pytest`` holds the parts.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from ._pytest._grid import ALONE, Grid
from ._pytest._hosts import (
    FixtureRun,
    StepTimedOut,
    close_hosts,
    host_for,
    own_threads,
)
from ._pytest._leaks import Allowance, Snapshot, find_leaks, snapshot
from ._pytest._variants import PAIRS, VARIANTS, BridgePair, Variant, variant

__all__ = ("BridgePair",)

MARK = "bridge"
#: The parametrised fixture: the host variant's name.
RUNTIME = "bridge_runtime"
#: The pairing fixture.
PAIR = "bridge_pair"
#: Markers of the plugins whose tests are not ours.
_OTHER_MARKS = ("asyncio", "trio", "anyio")


@dataclass
class _State:
    config: pytest.Config
    mode: str
    selected: tuple[str, ...]
    default_timeout: float | None
    leak_check: bool
    ignore_threads: list[str]
    asyncio_auto: bool
    trio_auto: bool
    current: pytest.Item | None = None
    #: Context changes each live async fixture made, by fixture definition.
    deltas: dict[Any, dict[contextvars.ContextVar[Any], Any]] = field(default_factory=dict)
    #: Async fixture definitions given a dependency on RUNTIME, and whether
    #: the fixture itself asked for it.
    augmented: dict[Any, bool] = field(default_factory=dict)
    allowed: Allowance = field(default_factory=Allowance)
    #: Test functions whose runtimes are grouped (they use a wider async fixture).
    grouped: set[object] = field(default_factory=set)
    before: dict[str, Snapshot] = field(default_factory=dict)

    def timeout_for(self, item: pytest.Item | None) -> float | None:
        marker = item.get_closest_marker(MARK) if item is not None else None
        if marker is not None and "timeout" in marker.kwargs:
            value = marker.kwargs["timeout"]
            return float(value) if value else None
        return self.default_timeout

    def leak_check_for(self, item: pytest.Item) -> bool:
        marker = item.get_closest_marker(MARK)
        if marker is not None and "leak_check" in marker.kwargs:
            return bool(marker.kwargs["leak_check"])
        return self.leak_check

    def context_for(self, item: pytest.Item | None) -> contextvars.Context:
        """A copy of this thread's context with the changes of every live
        async fixture of ``item`` applied, in the item's fixture order."""
        context = contextvars.copy_context()
        if item is None or not self.deltas:
            return context
        defs = _fixturedefs(item)
        for name in item.fixturenames:  # type: ignore[attr-defined]
            fixturedefs = defs.get(name)
            delta = self.deltas.get(fixturedefs[-1]) if fixturedefs else None
            for var, value in (delta or {}).items():
                context.run(var.set, value)
        return context


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def _fixturedefs(item: pytest.Item) -> dict[str, Any]:
    info = getattr(item, "_fixtureinfo", None)
    return dict(getattr(info, "name2fixturedefs", {}))


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:  # the plugin that owns it is not installed
        return None


# -- configuration ----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridge", "runtime-bridge: tests on every runtime")
    group.addoption(
        "--bridge-runtimes",
        default=None,
        metavar="NAMES",
        help="comma-separated runtime variants to run bridge tests on "
        "(asyncio, asyncio+uvloop, trio, curio, pet_executor); the default is all",
    )
    parser.addini(
        "bridge_mode",
        "strict: only tests marked bridge (or taking bridge_runtime / bridge_pair); "
        "auto: also every other async test",
        default="strict",
    )
    parser.addini(
        "bridge_timeout", "seconds each step of a bridge test may take (0: no limit)", default="60"
    )
    parser.addini(
        "bridge_leak_check",
        "check bridge tests for leaked threads, pets, tasks, fds",
        type="bool",
        default=True,
    )
    parser.addini(
        "bridge_leak_ignore_threads",
        "thread name patterns (fnmatch) the leak check ignores",
        type="linelist",
        default=[],
    )
    parser.addini(
        "bridge_group_by_runtime",
        "with pytest-xdist's --dist load (what -n implies): keep the tests of one "
        "runtime on one worker (xdist's loadgroup scheduling)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARK}(runtimes=None, guests=None, timeout=None, leak_check=True): run this async "
        "test once per runtime variant (or per host x guest pairing, with the bridge_pair "
        "fixture); runtimes/guests narrow the variants",
    )
    mode = str(config.getini("bridge_mode")).strip() or "strict"
    if mode not in ("strict", "auto"):
        raise pytest.UsageError(f"bridge_mode must be 'strict' or 'auto', not {mode!r}")
    option = config.getoption("bridge_runtimes")
    selected = tuple(v.name for v in VARIANTS)
    if option:
        selected = tuple(_check_names(n.strip() for n in option.split(",") if n.strip()))
    timeout = float(config.getini("bridge_timeout") or 0)
    asyncio_mode = config.getoption("asyncio_mode", None) or _ini(config, "asyncio_mode")
    state = _State(
        config=config,
        mode=mode,
        selected=selected,
        default_timeout=timeout or None,
        leak_check=bool(config.getini("bridge_leak_check")),
        ignore_threads=list(config.getini("bridge_leak_ignore_threads")),
        asyncio_auto=config.pluginmanager.hasplugin("asyncio") and asyncio_mode == "auto",
        trio_auto=config.pluginmanager.hasplugin("trio") and bool(_ini(config, "trio_mode")),
    )
    if mode == "auto" and (state.asyncio_auto or state.trio_auto):
        other = "pytest-asyncio's asyncio_mode" if state.asyncio_auto else "pytest-trio's trio_mode"
        raise pytest.UsageError(
            f"bridge_mode = auto and {other} = auto both claim every async test; "
            "set one of them back to strict and mark the tests of the other "
            "(@pytest.mark.bridge, or @pytest.mark.asyncio / @pytest.mark.trio)"
        )
    config.stash[_STATE] = state


def _check_names(names: Any) -> list[str]:
    found = []
    for name in names:
        try:
            found.append(variant(name).name)
        except LookupError as exc:
            raise pytest.UsageError(str(exc)) from None
    return found


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = _state(config)
    parts = []
    for v in VARIANTS:
        if v.name not in state.selected:
            continue
        reason = v.unavailable_reason()
        parts.append(v.name if reason is None else f"{v.name} (skipped: {reason})")
    lines = [f"bridge: mode={state.mode}, runtimes: {', '.join(parts)}"]
    if state.asyncio_auto:
        lines.append(
            "bridge: pytest-asyncio's asyncio_mode=auto claims every async test; "
            "the tests marked bridge (or taking bridge_runtime / bridge_pair) stay bridge's"
        )
    if state.trio_auto:
        lines.append(
            "bridge: pytest-trio's trio_mode claims every async test; "
            "the tests marked bridge (or taking bridge_runtime / bridge_pair) stay bridge's"
        )
    return lines


# -- collection --------------------------------------------------------------------


def _claimed_by_others(node: pytest.Item | pytest.Function, fixturenames: list[str]) -> bool:
    return (
        any(node.get_closest_marker(m) is not None for m in _OTHER_MARKS)
        or "anyio_backend" in fixturenames
    )


def _explicit_marks(fn: object, name: str) -> bool:
    return any(getattr(m, "name", None) == name for m in getattr(fn, "pytestmark", ()))


def _wants_bridge(state: _State, node: pytest.Function, fixturenames: list[str]) -> bool:
    if node.get_closest_marker(MARK) is not None:
        return True
    if RUNTIME in fixturenames or PAIR in fixturenames:
        return True
    return (
        state.mode == "auto"
        and _is_async(getattr(node, "obj", None))
        and not _claimed_by_others(node, fixturenames)
    )


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    result = yield
    state = _state(collector.config)
    if not state.asyncio_auto or not result:
        return result
    # pytest-asyncio's auto mode turned every async test into an item of its
    # own; give ours back their plain form (without the mark it added).
    items = result if isinstance(result, list) else [result]
    mine = []
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and type(item) is not pytest.Function
            and _wants_bridge(state, item, item.fixturenames)
            and not _explicit_marks(item.obj, "asyncio")
        ):
            plain = pytest.Function.from_parent(
                item.parent,
                name=item.name,
                callspec=getattr(item, "callspec", None),
                callobj=item.obj,
                fixtureinfo=item._fixtureinfo,
                keywords=item.keywords,
                originalname=item.originalname,
            )
            plain.own_markers = [m for m in item.own_markers if m.name != "asyncio"]
            item = plain
        mine.append(item)
    return mine if isinstance(result, list) else mine[0]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = _state(metafunc.config)
    definition = metafunc.definition
    if not _wants_bridge(state, definition, metafunc.fixturenames):
        return
    marker = definition.get_closest_marker(MARK)
    kwargs = marker.kwargs if marker is not None else {}
    hosts = _narrow(state, kwargs.get("runtimes"))
    grouped = metafunc.config.pluginmanager.hasplugin("xdist")
    if RUNTIME not in metafunc.fixturenames:
        metafunc.fixturenames.append(RUNTIME)
    # A wider async fixture lives in the run of one runtime: then the tests
    # are grouped by runtime (a session-scoped parameter, and the sort in
    # pytest_collection_modifyitems); otherwise they keep their order.
    wide = any(
        _is_async(d.func) and d.scope != "function"
        for defs in _fixturedefs(metafunc.definition).values()
        for d in defs
    )
    scope: Literal["session", "function"] = "session" if wide else "function"
    if wide:
        state.grouped.add(metafunc.function)

    def marks(host: str, reason: str | None) -> list[pytest.MarkDecorator]:
        found = [pytest.mark.skip(reason=reason)] if reason is not None else []
        if grouped:
            found.append(pytest.mark.xdist_group(f"bridge-{host}"))
        return found

    if PAIR in metafunc.fixturenames:
        guests = _narrow(state, kwargs.get("guests"))
        values = [
            pytest.param(
                variant(h),
                PAIRS[h, g],
                id=f"{h}->{g}",
                marks=marks(h, PAIRS[h, g].unavailable_reason()),
            )
            for h in hosts
            for g in guests
        ]
        metafunc.parametrize((RUNTIME, PAIR), values, indirect=[RUNTIME], scope=scope)
    else:
        values = [
            pytest.param(variant(h), id=h, marks=marks(h, variant(h).unavailable_reason()))
            for h in hosts
        ]
        metafunc.parametrize(RUNTIME, values, indirect=True, scope=scope)


def _narrow(state: _State, names: Any) -> list[str]:
    if names is None:
        return list(state.selected)
    if isinstance(names, str):
        names = [names]
    wanted = set(_check_names(names))
    return [n for n in state.selected if n in wanted]


def _host_of(item: pytest.Item) -> Variant | None:
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get(RUNTIME) if callspec is not None else None
    return param if isinstance(param, Variant) else None


def _pair_of(item: pytest.Item) -> BridgePair | None:
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get(PAIR) if callspec is not None else None
    return param if isinstance(param, BridgePair) else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    order = {v.name: i for i, v in enumerate(VARIANTS)}
    positions = []
    for index, item in enumerate(items):
        host = _host_of(item)
        if host is None:
            continue
        if getattr(item, "function", None) in state.grouped:
            positions.append(index)
        if state.trio_auto and not _explicit_marks(getattr(item, "obj", None), "trio"):
            # pytest-trio's trio_mode marked it; it is ours.
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]
        for fixturedefs in _fixturedefs(item).values():
            for fixturedef in fixturedefs:
                if _is_async(fixturedef.func) and fixturedef not in state.augmented:
                    # Depending on the runtime makes pytest cache the fixture per
                    # runtime, and tear it down when the runtime changes.
                    declared = RUNTIME in fixturedef.argnames
                    state.augmented[fixturedef] = declared
                    if not declared:
                        fixturedef.argnames = (*fixturedef.argnames, RUNTIME)
    # One runtime's tests together (each keeps pytest's order), among the
    # tests that use wider async fixtures: those are set up once per runtime,
    # not once per switch.
    ours = sorted((items[i] for i in positions), key=lambda it: order[_host_of(it).name])  # type: ignore[union-attr]
    for index, item in zip(positions, ours, strict=True):
        items[index] = item


# -- running ------------------------------------------------------------------------


def _fail_timed_out(error: StepTimedOut) -> None:
    pytest.fail(error.report(), pytrace=False)


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    state = _state(request.config)
    item = state.current
    wide = fixturedef.scope != "function"
    watch = item is not None and wide and state.leak_check_for(item)
    host_variant = _host_of(item) if item is not None else None
    before = snapshot(host_for(host_variant).tasks() if host_variant else ()) if watch else None
    func = fixturedef.func
    if fixturedef not in state.augmented:
        result = yield
    else:
        from _pytest.fixtures import resolve_fixture_function

        original = resolve_fixture_function(fixturedef, request)
        declared = state.augmented[fixturedef]
        if request.getfixturevalue(RUNTIME) is None:
            wrapper: Callable[..., Any] = _pass_through(original, declared)
        else:
            wrapper = _sync_face(state, fixturedef, original, declared)
        fixturedef.func = wrapper
        try:
            result = yield
        finally:
            fixturedef.func = func
    if before is not None:
        made = state.allowed.add(
            before, snapshot(host_for(host_variant).tasks() if host_variant else ())
        )
        request.addfinalizer(functools.partial(state.allowed.remove, made))
    return result


def _pass_through(original: Callable[..., Any], declared: bool) -> Callable[..., Any]:
    """The async fixture, as another plugin sees it in a test that is not ours."""
    if inspect.isasyncgenfunction(original):

        @functools.wraps(original)
        async def agen(**kwargs: Any) -> AsyncGenerator[Any, None]:
            if not declared:
                kwargs.pop(RUNTIME, None)
            async for value in original(**kwargs):
                yield value

        return agen

    @functools.wraps(original)
    async def coro(**kwargs: Any) -> Any:
        if not declared:
            kwargs.pop(RUNTIME, None)
        return await original(**kwargs)

    return coro


def _delta(
    before: contextvars.Context, after: contextvars.Context | None
) -> dict[contextvars.ContextVar[Any], Any]:
    if after is None:
        return {}
    missing = object()
    return {var: value for var, value in after.items() if before.get(var, missing) is not value}


def _sync_face(
    state: _State, fixturedef: Any, original: Callable[..., Any], declared: bool
) -> Callable[..., Generator[Any, None, None]]:
    """The async fixture as pytest runs it: setup and teardown are steps of
    the test's run."""

    def bridge_fixture(**kwargs: Any) -> Generator[Any, None, None]:
        name = kwargs[RUNTIME] if declared else kwargs.pop(RUNTIME)
        host = host_for(variant(name))
        item = state.current
        timeout = state.timeout_for(item)
        label = f"async fixture {fixturedef.argname!r}"
        run = FixtureRun(host, original, kwargs)
        context = state.context_for(item)
        before = context.copy()  # the step may run in ``context`` itself
        try:
            value = run.setup(context, timeout, f"setup of {label}")
        except StepTimedOut as error:
            _fail_timed_out(error)
        state.deltas[fixturedef] = _delta(before, run.context_after)
        try:
            yield value
        finally:
            state.deltas.pop(fixturedef, None)
            try:
                run.teardown(state.context_for(state.current), timeout, f"teardown of {label}")
            except StepTimedOut as error:
                _fail_timed_out(error)

    return bridge_fixture


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    host_variant = _host_of(pyfuncitem)
    if host_variant is None:
        return None
    state = _state(pyfuncitem.config)
    funcargs = pyfuncitem.funcargs
    testargs = {arg: funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    context = state.context_for(pyfuncitem)
    test = pyfuncitem.obj
    if not _is_async(test):
        context.run(test, **testargs)
        return True
    if inspect.isasyncgenfunction(test):
        pytest.fail("a test cannot be an async generator; make it an async def", pytrace=False)
    host = host_for(host_variant)
    try:
        host.run(
            functools.partial(test, **testargs),
            context,
            timeout=state.timeout_for(pyfuncitem),
            what=f"test {pyfuncitem.name}",
        )
    except StepTimedOut as error:
        _fail_timed_out(error)
    return True


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    host_variant = _host_of(item)
    if host_variant is None:
        return (yield)
    state = _state(item.config)
    state.current = item
    pair = _pair_of(item)
    item.user_properties.append(("bridge", pair.id if pair is not None else host_variant.name))
    conflict = [m for m in _OTHER_MARKS if item.get_closest_marker(m) is not None]
    if conflict or "anyio_backend" in item.fixturenames:  # type: ignore[attr-defined]
        other = f"@pytest.mark.{conflict[0]}" if conflict else "the anyio_backend fixture"
        pytest.fail(
            f"{item.name} is a bridge test and also uses {other}; one plugin runs a test: "
            f"drop one of the two",
            pytrace=False,
        )
    reason = pair.unavailable_reason() if pair is not None else host_variant.unavailable_reason()
    if reason is None and not item.get_closest_marker("skip"):
        host = host_for(host_variant)
        if pair is not None and pair.guest != pair.host:
            target = pair.guest_target()
            if isinstance(target, str):
                from ._pets import pet

                target = pet(target)
            target.call(_nothing)  # the guest's shared pet is warm before the leak check
        if state.leak_check_for(item):
            state.before[item.nodeid] = snapshot(host.tasks())
    return (yield)


async def _nothing() -> None:
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    state = _state(item.config)
    before = state.before.pop(item.nodeid, None)
    try:
        result = yield
    finally:
        state.current = None
    host_variant = _host_of(item)
    if before is not None and host_variant is not None:
        host = host_for(host_variant)
        after = snapshot(host.tasks())
        leaks = find_leaks(before, after, state.allowed, own_threads(), state.ignore_threads)
        if leaks:
            pytest.fail(
                f"{item.name} leaked:\n" + "\n".join(f"  - {line}" for line in leaks),
                pytrace=False,
            )
    return result


# -- reporting ---------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cell = dict(report.user_properties).get("bridge")
    if not isinstance(cell, str):
        return
    host, _, guest = cell.partition("->")
    outcome = report.outcome if report.when == "call" or report.outcome != "passed" else None
    if outcome is None:
        return
    _grid.record(report.nodeid, host, guest or ALONE, outcome)


#: The grid of this process (the controller's, under pytest-xdist).
_grid = Grid()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = _grid.render()
    if not lines:
        return
    terminalreporter.write_sep("=", "bridge: outcomes by host (rows) and guest (columns)")
    for line in lines:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    close_hosts()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``bridge_group_by_runtime``, under ``--dist load`` (what ``-n``
    implies): the tests of one runtime go to one worker, other tests are
    spread one by one."""
    if not config.getini("bridge_group_by_runtime") or config.getvalue("dist") != "load":
        return None
    from ._pytest._xdist import scheduler

    return scheduler(config, log)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bridge_runtime(request: pytest.FixtureRequest) -> str | None:
    """The runtime variant this test runs on: ``"asyncio"``,
    ``"asyncio+uvloop"``, ``"trio"``, ``"curio"`` or ``"pet_executor"``
    (for a pairing test: the host's)."""
    param = getattr(request, "param", None)
    return param.name if isinstance(param, Variant) else None


@pytest.fixture
def bridge_pair() -> BridgePair:
    """The host and guest of a pairing test; the plugin parametrises it."""
    raise pytest.UsageError("bridge_pair is parametrised by the bridge plugin")  # pragma: no cover
