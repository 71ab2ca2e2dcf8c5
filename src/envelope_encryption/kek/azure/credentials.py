"""Credentials and SDK client settings of the azure back end.

The credential comes from the deployment's settings (a Unity Catalog service credential on
Databricks, a client secret named by an environment variable, or ``DefaultAzureCredential``);
:func:`client_kwargs` is the one place where the SDK clients' retry, logging and TLS
settings are decided, for the provider and the notebook helpers alike.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...config import Settings
from ...errors import ConfigError
from ...lakehouse import running_on_databricks

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# Entra authority hosts that instance discovery knows; any other (a private or test
# authority) must skip discovery, which would otherwise call login.microsoftonline.com.
_KNOWN_AUTHORITIES = {
    "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
    "login.microsoftonline.de",
}


def credential_from_settings(settings: Settings) -> TokenCredential:
    """The credential a deployment names, in order of preference.

    1. On Databricks with ``service_credential`` set: the Unity Catalog service credential,
       through ``dbutils.credentials.getServiceCredentialsProvider``.
    2. ``azure-tenant-id`` + ``azure-client-id`` + ``azure-client-secret-env`` (the *name* of
       an environment variable holding the secret): a ``ClientSecretCredential``.
    3. Otherwise ``DefaultAzureCredential`` (environment, workload or managed identity, CLI).

    ``azure-authority-host`` points options 2 and 3 at another Entra authority (sovereign
    clouds); ``azure-ca-bundle`` verifies the authority's TLS certificate too.
    """
    if settings.service_credential:
        if running_on_databricks():
            from databricks.sdk.runtime import dbutils

            return dbutils.credentials.getServiceCredentialsProvider(settings.service_credential)
        log.info("not on Databricks: service credential %s is not used; falling back to "
                 "client-secret or default Azure credentials", settings.service_credential)
    tenant = settings.option("azure-tenant-id")
    client = settings.option("azure-client-id")
    secret_env = settings.option("azure-client-secret-env")
    authority = settings.option("azure-authority-host")
    kwargs: dict[str, Any] = {}
    if authority:
        if urlsplit(authority).scheme != "https":
            raise ConfigError(f"azure-authority-host must be an https URL, not {authority!r}")
        kwargs["authority"] = authority
        if urlsplit(authority).hostname not in _KNOWN_AUTHORITIES:
            kwargs["disable_instance_discovery"] = True
    if settings.option("azure-ca-bundle"):
        kwargs["connection_verify"] = ca_bundle(settings.option("azure-ca-bundle"))
    if tenant or client or secret_env:
        missing = [name for name, value in (("azure-tenant-id", tenant),
                                            ("azure-client-id", client),
                                            ("azure-client-secret-env", secret_env)) if not value]
        if missing:
            raise ConfigError(
                "a client-secret credential needs azure-tenant-id, azure-client-id and "
                f"azure-client-secret-env; missing: {', '.join(missing)}"
            )
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise ConfigError(
                f"azure-client-secret-env names the environment variable {secret_env}, which "
                "is not set in this process"
            )
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(tenant, client, secret, **kwargs)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**kwargs)


def ca_bundle(path: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"azure-ca-bundle {path!r} is not a file")
    return path


def client_kwargs(vault_url: str, connection_verify: str | bool | None,
                   retry_total: int, retry_backoff_factor: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # azure-core's RetryPolicy retries 408/429/5xx and sleeps for Retry-After when the
        # service sends it (Key Vault does on 429), else backs off exponentially.
        "retry_total": retry_total,
        # Otherwise azure-core gives up after 3 throttled (429) or 5xx answers in a row
        # (its retry_status default), whatever retry_total says.
        "retry_status": retry_total,
        "retry_backoff_factor": retry_backoff_factor,
        "retry_backoff_max": 60,
        # Body logging would write unwrap responses (plaintext DEKs) to the log: never on.
        "logging_enable": False,
    }
    if connection_verify is not None:
        kwargs["connection_verify"] = connection_verify
    # The SDK checks that the vault's host ends with the challenge's resource domain
    # (vault.azure.net). Only a loopback vault (the project's tests) may skip that check.
    if urlsplit(vault_url).hostname in _LOOPBACK:
        kwargs["verify_challenge_resource"] = False
    return kwargs
