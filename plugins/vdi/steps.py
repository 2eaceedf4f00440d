"""The steps of ``vdi_provision``, in order: the event log's step names, the titles the ticket's comments use and,
but for the steps done inside another step's task (``WITHIN``), the DAG's task ids. Cheap at DAG parse."""

from __future__ import annotations

try:
    from enum import StrEnum
except ImportError:  # Python 3.10: the same class, backported
    from backports.strenum import StrEnum


class Step(StrEnum):
    VALIDATE = "validate"
    DEDUPE = "dedupe"
    PERSIST = "persist"
    JIRA_IN_PROGRESS = "jira_in_progress"
    LAUNCH_INSTANCE = "launch_instance"
    WAIT_INSTANCE_RUNNING = "wait_instance_running"
    WAIT_BOOTSTRAP = "wait_bootstrap"
    REGISTER_DESKTOP = "register_desktop"
    WAIT_DESKTOP_IN_POOL = "wait_desktop_in_pool"
    WAIT_AGENT_RUNNING = "wait_agent_running"
    JIRA_READY = "jira_ready"

    @property
    def task(self) -> Step:
        """The step whose task does this one (itself, unless it is in ``WITHIN``)."""
        return WITHIN.get(self, self)

    @property
    def title(self) -> str:
        """What the step is doing, as a requester reads it ("Provisioning stopped while <title>")."""
        return _TITLES[self]


_TITLES = {
    Step.VALIDATE: "reading the ticket",
    Step.DEDUPE: "checking for an existing desktop",
    Step.PERSIST: "recording the request",
    Step.JIRA_IN_PROGRESS: "updating the ticket",
    Step.LAUNCH_INSTANCE: "launching the EC2 instance",
    Step.WAIT_INSTANCE_RUNNING: "waiting for the instance to pass its status checks",
    Step.WAIT_BOOTSTRAP: "setting up the desktop at its first boot",
    Step.REGISTER_DESKTOP: "registering the desktop with Leostream",
    Step.WAIT_DESKTOP_IN_POOL: "waiting for Leostream to discover the desktop",
    Step.WAIT_AGENT_RUNNING: "waiting for the desktop's Leostream agent to report in",
    Step.JIRA_READY: "handing the desktop over on the ticket",
}


# Steps done inside another step's task (one task process and, for a wait, one trigger, less per request); the
# event log and the failure comments still name them, and older requests' rows may carry ``dedupe``.
WITHIN = {
    Step.DEDUPE: Step.PERSIST,  # the claim refuses under the row lock what dedupe refused
    Step.WAIT_BOOTSTRAP: Step.WAIT_INSTANCE_RUNNING,
    Step.WAIT_AGENT_RUNNING: Step.WAIT_DESKTOP_IN_POOL,
}
# The task ids of ``vdi_provision``, in order.
TASK_STEPS = tuple(step for step in Step if step not in WITHIN)


class RemovalStep(StrEnum):
    """The steps of ``vdi_deprovision``, as ``Step`` is for ``vdi_provision``."""

    CLAIM = "claim"
    RESOLVE = "resolve"
    REMOVE_FROM_BROKER = "remove_from_broker"
    STOP_INSTANCES = "stop_instances"
    TERMINATE_INSTANCES = "terminate_instances"
    FINISH = "finish"

    @property
    def title(self) -> str:
        """What the step is doing, as a requester reads it ("Removal stopped while <title>")."""
        return _REMOVAL_TITLES[self]


_REMOVAL_TITLES = {
    RemovalStep.CLAIM: "reading the ticket",
    RemovalStep.RESOLVE: "finding the desktops to remove",
    RemovalStep.REMOVE_FROM_BROKER: "taking the desktops out of Leostream",
    RemovalStep.STOP_INSTANCES: "stopping the desktops",
    RemovalStep.TERMINATE_INSTANCES: "deleting the desktops",
    RemovalStep.FINISH: "updating the tickets",
}
