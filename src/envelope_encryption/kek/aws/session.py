"""boto3 clients for the AWS back ends (KMS and Secrets Manager), built one way.

Jobs and the SQL functions' runtime both build their clients here. Credentials, in this
order: a credential passed in (the Unity Catalog UDF runtime passes the botocore session of
the function's service credential); else a Unity Catalog service credential by name (on
Databricks, ``dbutils.credentials.getServiceCredentialsProvider(name)`` returns a botocore
session for the credential's IAM role); else the default AWS chain. ``--aws-region`` sets the
region (else the chain's own) and ``--aws-endpoint-url`` points the client at an emulator;
nothing else differs between production and tests.
"""

from __future__ import annotations

import logging
from typing import Any

from ...config import Settings
from ...lakehouse import running_on_databricks
from .errors import aws_errors

log = logging.getLogger(__name__)

# KMS and Secrets Manager throttle per account and region; adaptive mode backs off and
# rate-limits the client itself, so a burst slows down instead of failing.
RETRIES = {"mode": "adaptive", "max_attempts": 10}

# IAM action prefix of each service, for the error raised when the client cannot be built.
_ACTIONS = {"kms": "kms:*", "secretsmanager": "secretsmanager:*"}


def aws_session(settings: Settings, credential: Any | None = None) -> Any:
    """A boto3 session: ``credential`` (a botocore session) when given, else the UC service
    credential on Databricks, else the default chain."""
    import boto3

    region = settings.option("aws-region") or None
    if credential is not None:
        return boto3.Session(botocore_session=credential, region_name=region)
    if settings.service_credential and running_on_databricks():
        from databricks.sdk.runtime import dbutils

        provider = dbutils.credentials.getServiceCredentialsProvider(
            settings.service_credential
        )
        return boto3.Session(botocore_session=provider, region_name=region)
    if settings.service_credential:
        log.info("not on Databricks: service credential %s unused, default AWS chain instead",
                 settings.service_credential)
    return boto3.Session(region_name=region)


def aws_client(settings: Settings, service: str, credential: Any | None = None) -> Any:
    """A client of ``service`` ("kms" or "secretsmanager") for ``settings``."""
    from botocore.config import Config

    config = Config(
        retries=dict(RETRIES),
        connect_timeout=10,
        read_timeout=30,
        user_agent_extra="envelope-encryption",
    )
    with aws_errors(_ACTIONS.get(service, f"{service}:*"), f"the {service} client"):
        return aws_session(settings, credential).client(
            service, endpoint_url=settings.option("aws-endpoint-url") or None, config=config
        )
