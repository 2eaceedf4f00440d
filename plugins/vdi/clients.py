"""Clients built from the Airflow connections (``jira_default``, ``leostream_default``, ``aws_default``,
``vdi_db``), and the task settings read from the environment. Used inside tasks, never at DAG import."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

JIRA_CONN_ID = "jira_default"
LEOSTREAM_CONN_ID = "leostream_default"
AWS_CONN_ID = "aws_default"

# Airflow pools that bound the calls to each external system (created by `make run`, see include/).
JIRA_POOL = "jira_api"
LEOSTREAM_POOL = "leostream_api"
AWS_POOL = "aws_api"


def task_defaults() -> dict[str, Any]:
    """``default_args`` of the VDI DAGs: retries with exponential backoff, tunable from the environment."""
    return {
        "owner": "platform",
        "retries": int(os.environ.get("VDI_TASK_RETRIES", "3")),
        "retry_delay": timedelta(seconds=float(os.environ.get("VDI_RETRY_DELAY_S", "30"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }


def sensor_settings() -> dict[str, Any]:
    """Sensors reschedule (no worker slot held while waiting)."""
    return {
        "mode": "reschedule",
        "poke_interval": float(os.environ.get("VDI_POKE_INTERVAL_S", "30")),
        "timeout": float(os.environ.get("VDI_WAIT_TIMEOUT_S", str(45 * 60))),
    }


def jira():
    from vdi.jira import JiraTicket

    return JiraTicket.from_connection(JIRA_CONN_ID)


@contextmanager
def leostream():
    """One broker session for the task: logged in on first use, logged out at the end."""
    from vdi.leostream import LeostreamHook

    with LeostreamHook(LEOSTREAM_CONN_ID) as client:
        yield client


def leostream_url() -> str:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(LEOSTREAM_CONN_ID).host or ""


def aws_client(service: str):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type=service).get_conn()


def ec2():
    from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

    return EC2Hook(aws_conn_id=AWS_CONN_ID, api_type="client_type").conn


@contextmanager
def database():
    from vdi.store.db import connect

    with connect(autocommit=True) as conn:
        yield conn


def user_data(request, os_family: str) -> str:
    """The desktop's first-boot script: the playbook bundle published to S3 (when a bucket is configured),
    then user data that fetches and runs it. Carries no secret."""
    from vdi.catalog import load_catalog
    from vdi.playbook_bundle import publish_playbook_bundle
    from vdi.userdata import render_user_data

    bucket = os.environ.get("VDI_PLAYBOOK_BUCKET")
    playbook_uri = publish_playbook_bundle(aws_client("s3"), bucket) if bucket else None
    from vdi.provision import broker_address

    return render_user_data(
        os_family=os_family,
        broker_address=broker_address(leostream_url()),
        bundle=request.bundle,
        issue_key=request.issue_key,
        request_id=str(request.request_id),
        playbook_s3_uri=playbook_uri,
        region=load_catalog().region,
    )
