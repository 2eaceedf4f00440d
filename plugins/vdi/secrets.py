"""Airflow's connections and variables from AWS Secrets Manager, with every call bounded in time.

Production sets (docs/security.md)::

    AIRFLOW__SECRETS__BACKEND=vdi.secrets.SecretsManagerBackend
    AIRFLOW__SECRETS__BACKEND_KWARGS={"connections_prefix": "airflow/connections",
                                      "variables_prefix": "airflow/variables", "config_prefix": null,
                                      "region_name": "us-east-1"}

This is the Amazon provider's ``SecretsManagerBackend`` with one change: its client carries timeouts and bounded
retries. The provider builds its client without the backend's ``config_kwargs``, so botocore's defaults (60 s to
connect, 60 s to read, per attempt) would hold a task, or the scheduler, that long when Secrets Manager does not
answer. ``config_kwargs`` in the backend kwargs still wins.
"""

from __future__ import annotations

from functools import cached_property

from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend as _ProviderBackend

from vdi.settings import SECRETS_MANAGER_CALL_LIMITS as CALL_LIMITS

CONNECTIONS_PREFIX = "airflow/connections"
VARIABLES_PREFIX = "airflow/variables"


class SecretsManagerBackend(_ProviderBackend):
    """The provider's backend, whose Secrets Manager calls time out (``CALL_LIMITS``)."""

    @cached_property
    def client(self):
        from botocore.config import Config

        from airflow.providers.amazon.aws.hooks.base_aws import SessionFactory
        from airflow.providers.amazon.aws.utils import trim_none_values
        from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

        conn_config = AwsConnectionWrapper.from_connection_metadata(
            conn_id=f"{self.__class__.__name__}__connection", extra=self.kwargs)
        client_kwargs = trim_none_values({
            "region_name": conn_config.region_name,
            "verify": conn_config.verify,
            "endpoint_url": conn_config.endpoint_url,
            "api_version": self.api_version,
            "use_ssl": self.use_ssl,
            "config": conn_config.botocore_config or Config(**CALL_LIMITS),
        })
        session = SessionFactory(conn=conn_config).create_session()
        return session.client(service_name="secretsmanager", **client_kwargs)
