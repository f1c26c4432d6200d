"""A Hypothesis stateful test of the waker and task state machine.

One task awaits a hand-written future (optionally inside a shield), then
passes one more checkpoint. The rules wake it (once, twice, from another
thread), open the future, abort the task (before it starts, while it
waits, during its own poll, after it finished), make the future wake itself
during a poll, and step the kernel. A model predicts, after every step, how
often the future was polled and dropped, how often the task's ``finally``
ran, and how the task ended; no code of the task runs after it is done.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import pet_executor as pe
from pet_executor.lowlevel import Kernel, checkpoint

from ._helpers import Gate, in_thread


class TaskMachine(RuleBasedStateMachine):
    @initialize(shielded=st.booleans())
    def start(self, shielded: bool) -> None:
        self.kernel = Kernel()
        self.gate = Gate()
        self.finals = 0
        self.after_done = 0
        self.shielded = shielded
        gate = self.gate

        async def body() -> str:
            try:
                if shielded:
                    with pe.shield():
                        value = await gate
                else:
                    value = await gate
                await checkpoint()
                return value
            finally:
                self.finals += 1
                if self.finals > 1:
                    self.after_done += 1

        self.handle = self.kernel.spawn(body)
        # The model.
        self.started = False
        self.scheduled = True
        self.aborted = False
        self.waiting = False  # parked at the gate (polled at least once)
        self.done = False
        self.outcome: str | None = None
        self.polls = 0
        self.drops = 0
        self.ran_code = False

    def teardown(self) -> None:
        kernel = getattr(self, "kernel", None)
        if kernel is not None:
            # A shielded wait outlives an abort: let it finish, so close()
            # (which waits for every task's cleanup) returns.
            self.gate.is_open = True
            if self.gate.waker is not None:
                self.gate.waker.wake()
            kernel.close()

    # -- the model: what one run of the task does -----------------------------

    def _run_once(self) -> None:
        self.scheduled = False
        if not self.started:
            self.started = True
            if self.aborted:  # dropped before its first poll: nothing runs
                self._finish("cancelled")
                return
            self.ran_code = True
            self._poll()
            return
        # resumed at the gate: a cancelled task drops the future
        if self.aborted and not self.shielded:
            self.drops += 1
            self._finish("cancelled")
            return
        self._poll()

    def _poll(self) -> None:
        self.polls += 1
        hook = self.pending_hook
        self.pending_hook = None
        if hook == "abort":
            self.aborted = True
            if not self.shielded:
                self.scheduled = True  # woken during its own poll: runs again
        elif hook == "self_wake":
            self.scheduled = True
        if self.gate_open:
            # past the gate (and out of the shield): one checkpoint, then done
            self._finish("cancelled" if self.aborted else "value")
            return
        self.waiting = True

    def _finish(self, outcome: str) -> None:
        self.done = True
        self.waiting = False
        self.scheduled = False
        self.outcome = outcome

    pending_hook: str | None = None
    gate_open = False
    remote_wake = False

    # -- rules --------------------------------------------------------------

    @rule()
    def step(self) -> None:
        self.kernel.run_until_stalled()
        if self.scheduled:
            self._run_once()  # the first batch
        # A wake from another thread is applied on the kernel's thread after
        # that batch: if the task parked again meanwhile, it is polled once
        # more (a spurious poll, never a lost wake); if it is scheduled
        # already, the wake is absorbed.
        if self.remote_wake:
            self.remote_wake = False
            if self.waiting and not self.done:
                self.scheduled = True
        while self.scheduled:
            self._run_once()

    @precondition(lambda self: self.gate.waker is not None)
    @rule(times=st.integers(min_value=1, max_value=3))
    def wake(self, times: int) -> None:
        """Waking once or several times before a step schedules one poll."""
        assert self.gate.waker is not None
        for _ in range(times):
            self.gate.waker.wake()
        if self.waiting and not self.done:
            self.scheduled = True

    @precondition(lambda self: self.gate.waker is not None)
    @rule()
    def wake_from_another_thread(self) -> None:
        waker = self.gate.waker
        assert waker is not None
        in_thread(waker.wake)
        self.remote_wake = True

    @rule()
    def open_gate(self) -> None:
        """Ready, but nobody says so: it is not polled until woken."""
        self.gate.is_open = True
        self.gate_open = True

    @rule()
    def abort(self) -> None:
        self.handle.abort()
        if self.done:
            return  # abort after completion: no effect
        self.aborted = True
        if self.started and self.waiting and not self.shielded:
            self.scheduled = True

    @precondition(lambda self: not self.done)
    @rule(hook=st.sampled_from(["abort", "self_wake"]))
    def act_during_next_poll(self, hook: str) -> None:
        """Abort the task, or wake it, from inside the future's own poll."""
        handle = self.handle
        if hook == "abort":
            self.gate.during_poll = lambda cx: handle.abort()
        else:
            self.gate.during_poll = lambda cx: cx.waker.wake()
        self.pending_hook = hook

    # -- invariants -----------------------------------------------------------

    @invariant()
    def polls_and_drops_match_the_model(self) -> None:
        assert self.gate.polls == self.polls
        assert self.gate.drops == self.drops

    @invariant()
    def finally_runs_once_and_only_if_the_code_ran(self) -> None:
        assert self.after_done == 0
        assert self.finals == (1 if self.done and self.ran_code else 0)

    @invariant()
    def the_outcome_matches(self) -> None:
        task = self.handle.task
        assert task.done() == self.done
        if not self.done:
            expected = "scheduled" if self.scheduled else "idle"
            assert task.state == expected
            return
        assert task.state == "done"
        cx = pe.Context(pe.Waker(lambda: None))
        if self.outcome == "value":
            assert self.handle.poll(cx).value == "opened"
        else:
            with pytest.raises(pe.Cancelled):
                self.handle.poll(cx)

    @invariant()
    def a_shielded_wait_is_not_cut_short(self) -> None:
        if self.shielded and self.waiting:
            assert not self.handle.done()


# Derandomized, without an example database: the same examples on every
# run and every xdist worker.
TaskMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, derandomize=True, database=None
)
test_task_state_machine: Any = TaskMachine.TestCase
