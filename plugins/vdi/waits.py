"""The waits of ``vdi_provision`` (instance running, first boot, desktop in its pool, agent running), deferred to
Airflow's triggerer: while a desktop is on its way, its wait holds no worker slot and starts no process.

``StepWait``'s task defers at once to ``StepTrigger``, which runs the step's check (``check``: the step's function
in ``vdi.provision``, safe to repeat) in the triggerer, at once and then every ``VDI_POKE_INTERVAL_S`` (with an
EC2 client it keeps; a database connection, and for the broker's waits a broker session, per check), and ends the
task successfully from there: one short task process per wait, however long the wait, and no second start in a
worker. A check that raises ends the trigger with the cause; the task then resumes in a worker and checks once
more, so a failure takes the path every step's failure takes (retries, the failure callback, the plain Jira
comment). ``VDI_WAIT_TIMEOUT_S`` bounds the whole wait. Imports nothing heavy at DAG parse.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from vdi.states import Run
from vdi.steps import Step

WAITING_STEPS = (Step.WAIT_INSTANCE_RUNNING, Step.WAIT_BOOTSTRAP, Step.WAIT_DESKTOP_IN_POOL, Step.WAIT_AGENT_RUNNING)


@functools.cache
def _ec2():
    """One EC2 client per process: the triggerer checks many waits, every few seconds, with it."""
    from vdi.ec2 import aws_client

    return aws_client("ec2")


def check(step: Step, request: dict, run: Run, instance_id: str | None = None,
          registration: dict | None = None) -> bool:
    """Whether the wait of ``step`` is over for this request; raises what the step's function raises."""
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


class StepTrigger(BaseTrigger):
    """Repeats ``check`` for one wait until it is over (the task ends successfully) or raises (the task resumes
    in a worker with ``{"error": <cause>}``). Each check runs in a thread, bounded by ``check_timeout_s``."""

    def __init__(self, step: str, request: dict, run_id: str, manual: bool, force: bool, poke_interval_s: float,
                 check_timeout_s: float, instance_id: str | None = None, registration: dict | None = None):
        super().__init__()
        self.step, self.request, self.run_id, self.manual, self.force = step, request, run_id, manual, force
        self.poke_interval_s, self.check_timeout_s = poke_interval_s, check_timeout_s
        self.instance_id, self.registration = instance_id, registration

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "step": self.step, "request": self.request, "run_id": self.run_id, "manual": self.manual,
            "force": self.force, "poke_interval_s": self.poke_interval_s, "check_timeout_s": self.check_timeout_s,
            "instance_id": self.instance_id, "registration": self.registration}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from vdi.provision import readable_cause

        run = Run(self.run_id, manual=self.manual, force=self.force)
        while True:
            try:
                done = await asyncio.wait_for(
                    asyncio.to_thread(check, Step(self.step), self.request, run, self.instance_id,
                                      self.registration), self.check_timeout_s)
            except Exception as error:  # the worker checks again and fails the task the usual way
                self.log.info("%s of %s: %s", self.step, self.run_id, readable_cause(error))
                yield TriggerEvent({"error": readable_cause(error)})
                return
            if done:
                yield TaskSuccessEvent()
                return
            await asyncio.sleep(self.poke_interval_s)


class StepWait(BaseOperator):
    """A wait of ``vdi_provision``: ``step`` is one of ``WAITING_STEPS``; ``request`` (and ``instance_id`` or
    ``registration``) usually the ``XComArg`` of an earlier step."""

    template_fields = ("request", "instance_id", "registration")
    ui_color = "#e8f4f8"

    def __init__(self, *, step: Step, request: Any, poke_interval_s: float, wait_timeout_s: float,
                 instance_id: Any = None, registration: Any = None, **kwargs):
        if step not in WAITING_STEPS:
            raise ValueError(f"{step} is not a wait")
        super().__init__(task_id=step.value, **kwargs)
        self.step, self.request = step, request
        self.instance_id, self.registration = instance_id, registration
        self.poke_interval_s, self.wait_timeout_s = poke_interval_s, wait_timeout_s

    def _check(self, run: Run) -> bool:
        from vdi.callbacks import task_outcome

        with task_outcome():
            return check(self.step, self.request, run, self.instance_id, self.registration)

    def execute(self, context) -> None:
        """Defer at once: the triggerer runs the checks, so the task's process connects to nothing."""
        from vdi.callbacks import current_run

        run = current_run(context)
        check_timeout_s = self.execution_timeout.total_seconds() if self.execution_timeout else 60.0
        self.defer(trigger=StepTrigger(self.step.value, self.request, run.run_id, run.manual, run.force,
                                       self.poke_interval_s, check_timeout_s, self.instance_id, self.registration),
                   method_name="execute_complete", timeout=timedelta(seconds=self.wait_timeout_s))

    def execute_complete(self, context, event: dict | None = None) -> None:
        """The trigger stopped on an error: check once more here, where a failure fails the task as usual."""
        from vdi.callbacks import current_run

        if self._check(current_run(context)):
            return
        raise RuntimeError(f"{self.step} stopped: {(event or {}).get('error', 'the trigger ended')}")
