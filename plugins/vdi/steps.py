"""The steps of ``vdi_provision``, in order: the DAG's task ids, the event log's step names and the titles the
ticket's comments use. Cheap at DAG parse."""

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
