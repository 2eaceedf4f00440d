"""The waits of ``vdi_provision``, deferred to Airflow's triggerer: while a desktop is on its way, its wait holds no
worker slot and starts no process.

Two wait tasks, two phases each (``PHASES``): ``wait_instance_running`` waits for the instance's status checks,
then its first boot (``wait_bootstrap``); ``wait_desktop_in_pool`` for the broker to list the desktop, then its
agent to report in (``wait_agent_running``). A phase is a step of its own everywhere but in the task list: its
check (``check``: the step's function in ``vdi.provision``, safe to repeat), its event-log outcome, its bound
(``VDI_WAIT_TIMEOUT_S`` each) and the step a failure is recorded at (``failed_step`` on the error, which the
failure callback reads). One task and one trigger per pair instead of two: a task process, a trigger pick-up and
a scheduling round less per pair.

``StepWait``'s task defers to ``StepTrigger``, which runs the pending phases' checks in the triggerer, at once
and then every ``VDI_POKE_INTERVAL_S`` (with an EC2 client it keeps; a database connection, and for the broker's
waits a broker session, per check), and ends the task successfully from there. A wait with ``check_first``
checks once in its task before deferring (the broker's wait: after registration its desktop is usually there
already, so no trigger round trip); the EC2 wait defers at once (an instance just launched is never ready, and
its task then builds no EC2 client). A check that raises, or a phase not over within its bound, ends the trigger;
the task resumes in a worker and checks that phase once more, so a failure takes the path every step's failure
takes (retries, the failure callback, the plain Jira comment). Imports nothing heavy at DAG parse.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from vdi.states import Run
from vdi.steps import Step

# Each wait task's phases, in order (the task id is its first phase's step).
PHASES = {
    Step.WAIT_INSTANCE_RUNNING: (Step.WAIT_INSTANCE_RUNNING, Step.WAIT_BOOTSTRAP),
    Step.WAIT_DESKTOP_IN_POOL: (Step.WAIT_DESKTOP_IN_POOL, Step.WAIT_AGENT_RUNNING),
}
WAITING_STEPS = tuple(phase for phases in PHASES.values() for phase in phases)


@functools.cache
def _ec2():
    """One EC2 client per process: the triggerer checks many waits, every few seconds, with it."""
    from vdi.ec2 import aws_client

    return aws_client("ec2")


def check(step: Step, request: dict, run: Run, instance_id: str | None = None,
          registration: dict | None = None) -> bool:
    """Whether the wait of ``step`` (a phase) is over for this request; raises what the step's function raises."""
    from vdi import provision
    from vdi.request import DesktopRequest
    from vdi.settings import load

    desktop = DesktopRequest.model_validate(request)
    with provision.database() as conn:
        if step == Step.WAIT_INSTANCE_RUNNING:
            return provision.instance_ready(conn, _ec2(), desktop, run, instance_id)
        if step == Step.WAIT_BOOTSTRAP:
            return provision.bootstrap_finished(conn, _ec2(), desktop, run, instance_id, load().bootstrap_timeout_s)
        from vdi.leostream import broker_session

        with broker_session() as broker:
            if step == Step.WAIT_DESKTOP_IN_POOL:
                return provision.desktop_discovered(conn, broker, desktop, run, registration)
            if step == Step.WAIT_AGENT_RUNNING:
                return provision.agent_running(conn, broker, desktop, run, registration)
    raise ValueError(f"{step} is not a wait")


@contextmanager
def at_step(step: Step) -> Iterator[None]:
    """Errors raised inside are recorded at ``step`` (the failure callback reads ``failed_step``), not at the
    task's id."""
    try:
        yield
    except BaseException as error:
        error.failed_step = step
        raise


class StepTrigger(BaseTrigger):
    """Repeats ``check`` for the phase ``step``, then for each of ``then``, until all are over (the task ends
    successfully), one raises or one is not over within ``phase_timeout_s`` (the task resumes in a worker with
    ``{"error": <cause>, "step": <the phase>}``). Each check runs in a thread, bounded by ``check_timeout_s``."""

    def __init__(self, step: str, request: dict, run_id: str, manual: bool, force: bool, poke_interval_s: float,
                 check_timeout_s: float, instance_id: str | None = None, registration: dict | None = None,
                 then: list[str] | None = None, phase_timeout_s: float | None = None):
        super().__init__()
        self.step, self.request, self.run_id, self.manual, self.force = step, request, run_id, manual, force
        self.poke_interval_s, self.check_timeout_s = poke_interval_s, check_timeout_s
        self.instance_id, self.registration = instance_id, registration
        self.then, self.phase_timeout_s = list(then or ()), phase_timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "step": self.step, "request": self.request, "run_id": self.run_id, "manual": self.manual,
            "force": self.force, "poke_interval_s": self.poke_interval_s, "check_timeout_s": self.check_timeout_s,
            "instance_id": self.instance_id, "registration": self.registration, "then": self.then,
            "phase_timeout_s": self.phase_timeout_s}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from vdi.provision import readable_cause

        run = Run(self.run_id, manual=self.manual, force=self.force)
        for step in (self.step, *self.then):
            started = time.monotonic()
            while True:
                try:
                    done = await asyncio.wait_for(
                        asyncio.to_thread(check, Step(step), self.request, run, self.instance_id,
                                          self.registration), self.check_timeout_s)
                except Exception as error:  # the worker checks again and fails the task the usual way
                    self.log.info("%s of %s: %s", step, self.run_id, readable_cause(error))
                    yield TriggerEvent({"error": readable_cause(error), "step": step})
                    return
                if done:
                    break
                if self.phase_timeout_s is not None and time.monotonic() - started >= self.phase_timeout_s:
                    yield TriggerEvent({"error": f"not over after {self.phase_timeout_s:.0f} s", "step": step})
                    return
                await asyncio.sleep(self.poke_interval_s)
        yield TaskSuccessEvent()


class StepWait(BaseOperator):
    """A wait task of ``vdi_provision``: ``step`` is a key of ``PHASES``; ``request`` (and ``instance_id`` or
    ``registration``) usually the ``XComArg`` of an earlier step. ``check_first``: check once before deferring."""

    template_fields = ("request", "instance_id", "registration")
    ui_color = "#e8f4f8"

    def __init__(self, *, step: Step, request: Any, poke_interval_s: float, wait_timeout_s: float,
                 instance_id: Any = None, registration: Any = None, check_first: bool = False, **kwargs):
        if step not in PHASES:
            raise ValueError(f"{step} is not a wait")
        super().__init__(task_id=step.value, **kwargs)
        self.step, self.phases, self.request = step, PHASES[step], request
        self.instance_id, self.registration = instance_id, registration
        self.poke_interval_s, self.wait_timeout_s, self.check_first = poke_interval_s, wait_timeout_s, check_first

    def _pending(self, run: Run, phases: tuple[Step, ...]) -> tuple[Step, ...]:
        """Checks ``phases`` here, in order; the ones not over yet (from the first that is not)."""
        from vdi.callbacks import task_outcome

        for index, phase in enumerate(phases):
            with at_step(phase), task_outcome():
                if not check(phase, self.request, run, self.instance_id, self.registration):
                    return phases[index:]
        return ()

    def _defer(self, run: Run, phases: tuple[Step, ...]) -> None:
        check_timeout_s = self.execution_timeout.total_seconds() if self.execution_timeout else 60.0
        trigger = StepTrigger(phases[0].value, self.request, run.run_id, run.manual, run.force, self.poke_interval_s,
                              check_timeout_s, self.instance_id, self.registration,
                              then=[phase.value for phase in phases[1:]], phase_timeout_s=self.wait_timeout_s)
        # The trigger bounds each phase; this bounds the whole, should the trigger not run.
        self.defer(trigger=trigger, method_name="execute_complete",
                   timeout=timedelta(seconds=self.wait_timeout_s * len(phases) + self.poke_interval_s))

    def execute(self, context) -> None:
        """Defer (after one check here with ``check_first``): the triggerer runs the checks."""
        from vdi.callbacks import current_run

        run = current_run(context)
        pending = self._pending(run, self.phases) if self.check_first else self.phases
        if pending:
            self._defer(run, pending)

    def execute_complete(self, context, event: dict | None = None) -> None:
        """The trigger stopped on a phase (an error, or not over in time): check it once more here, where a
        failure fails the task as usual, at that phase's step; a phase over by now lets the wait go on."""
        from vdi.callbacks import current_run

        event = event or {}
        step = Step(event.get("step") or self.phases[0])
        run = current_run(context)
        pending = self._pending(run, self.phases[self.phases.index(step):])
        if pending and pending[0] == step:
            with at_step(step):
                raise RuntimeError(f"{step} stopped: {event.get('error', 'the trigger ended')}")
        if pending:
            self._defer(run, pending)
