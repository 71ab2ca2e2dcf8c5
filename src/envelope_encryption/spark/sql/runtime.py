"""What the privileged SQL functions run: unwrap a DEK, list a scope's DEK records.

The Unity Catalog functions ``<catalog>.<crypto>.unwrap_key`` and (``aws-sm``)
``<catalog>.<crypto>.dek_records`` are batch Python UDFs whose handler is two lines that call
:func:`unwrap_batches` / :func:`dek_records_batches` with the deployment's settings. The
handler imports this module from the project's wheel (the function's ENVIRONMENT), so a DEK
is unwrapped by the very provider code the jobs use: the same KMS encryption context, the
same Secrets Manager AAD, the same Key Vault binding tag. Nothing is re-implemented here.

Credentials: inside a Unity Catalog UDF the service credential named by the function's
``CREDENTIALS`` clause is reached through ``databricks.service_credentials`` (the notebook
API ``dbutils.credentials`` does not exist there). Elsewhere (local runs, tests) the
provider is built from the settings exactly as the jobs build it.

Caches live in module globals, so they last as long as the Python worker: each DEK version
is unwrapped once per worker, whatever the number of queries, rows or batches.

Nothing here logs, prints or raises a key; errors are the project's errors, whose messages
name the scope, version and the permission to check.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ...config import Settings
    from ...kek.base import KekProvider

_lock = threading.Lock()
_providers: dict[str, Any] = {}
_keys: dict[tuple[str, str, int, str, str, bytes], bytes] = {}


def clear_caches() -> None:
    """Forget providers and unwrapped DEKs of this process (tests)."""
    with _lock:
        _providers.clear()
        _keys.clear()


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings a function's handler needs, as plain data (rendered into its body)."""
    return {
        "backend": settings.backend,
        "catalog": settings.catalog,
        "schemas": list(settings.schemas),
        "metastore_id": settings.metastore_id,
        "crypto_schema": settings.crypto_schema,
        "keyring_table": settings.keyring_table,
        "service_credential": settings.service_credential,
        "options": dict(sorted(settings.options.items())),
    }


def settings_from_payload(payload: Mapping[str, Any]) -> Settings:
    from ...config import Settings

    return Settings(
        backend=payload["backend"],
        catalog=payload["catalog"],
        schemas=tuple(payload.get("schemas") or ("default",)),
        metastore_id=payload["metastore_id"],
        crypto_schema=payload["crypto_schema"],
        keyring_table=payload["keyring_table"],
        service_credential=payload.get("service_credential", ""),
        options=dict(payload.get("options") or {}),
    )


def _uc_service_credential(name: str) -> Any | None:
    """The service credential's provider inside a Unity Catalog UDF, else None."""
    if not name:
        return None
    try:
        from databricks.service_credentials import getServiceCredentialsProvider
    except ImportError:
        return None  # not inside a Unity Catalog UDF: local run or test
    return getServiceCredentialsProvider(name)


def _aws_client(settings: Settings, service: str, credential: Any | None) -> Any:
    import boto3
    from botocore.config import Config

    region = settings.option("aws-region") or None
    if credential is not None:
        # The UC service credential's provider is a botocore session for its IAM role.
        session = boto3.Session(botocore_session=credential, region_name=region)
    else:
        session = boto3.Session(region_name=region)
    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, connect_timeout=10,
                    read_timeout=30, user_agent_extra="envelope-encryption-sql")
    return session.client(service, endpoint_url=settings.option("aws-endpoint-url") or None,
                          config=config)


def build_provider(settings: Settings) -> KekProvider:
    """The KEK provider of a deployment, with the UDF's service credential when there is one."""
    credential = _uc_service_credential(settings.service_credential)
    if settings.backend == "aws-kms":
        from ...kek import aws_kms

        if credential is None:
            return aws_kms.from_settings(settings)
        return aws_kms.KmsKekProvider(
            _aws_client(settings, "kms", credential),
            metastore_id=settings.metastore_id,
            catalog=settings.catalog,
            key_id=settings.option("kms-key-id"),
            alias=settings.option("kms-key-alias"),
        )
    if settings.backend == "aws-sm":
        from ...kek import aws_secrets_manager

        return aws_secrets_manager.from_settings(
            settings, client=_aws_client(settings, "secretsmanager", credential)
        )
    if settings.backend == "azure":
        from ...kek import azure_key_vault

        return azure_key_vault.from_settings(settings, credential=credential)
    from ...kek.factory import build_kek_provider

    return build_kek_provider(settings)


def _provider(payload: Mapping[str, Any]) -> tuple[Settings, KekProvider]:
    cache_key = json.dumps(payload, sort_keys=True)
    with _lock:
        cached = _providers.get(cache_key)
    if cached is None:
        settings = settings_from_payload(payload)
        cached = (settings, build_provider(settings))
        with _lock:
            _providers[cache_key] = cached
    return cached


def unwrap_one(payload: Mapping[str, Any], wrapped_key: bytes, key_alias: str, key_version: int,
               kek_id: str, kek_version: str) -> bytes:
    """The plaintext DEK of one keyring record (cached per process)."""
    from ...identifiers import parse_scope
    from ...kek.base import WrapContext, WrappedDek

    blob = bytes(wrapped_key)
    version = int(key_version)
    cache_key = (key_alias, kek_id, version, kek_version or "", payload["backend"],
                 hashlib.sha256(blob).digest())
    with _lock:
        key = _keys.get(cache_key)
    if key is not None:
        return key
    parse_scope(key_alias)
    _, provider = _provider(payload)
    key = provider.unwrap(WrappedDek(blob, kek_id, kek_version or ""),
                          WrapContext(key_alias, version)).reveal()
    with _lock:
        _keys[cache_key] = key
    return key


def unwrap_series(payload: Mapping[str, Any], wrapped: Iterable[Any], aliases: Iterable[Any],
                  versions: Iterable[Any], kek_ids: Iterable[Any],
                  kek_versions: Iterable[Any]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for blob, alias, version, kek_id, kek_version in zip(
        wrapped, aliases, versions, kek_ids, kek_versions, strict=True
    ):
        if blob is None or alias is None or version is None:
            out.append(None)
            continue
        out.append(unwrap_one(payload, blob, alias, version, kek_id, kek_version))
    return out


def unwrap_batches(batches: Iterator[tuple[pd.Series, ...]],
                   payload: Mapping[str, Any]) -> Iterator[pd.Series]:
    """Batch handler of ``unwrap_key(wrapped_key, key_alias, key_version, kek_id, kek_version)``."""
    import pandas as pd

    for wrapped, aliases, versions, kek_ids, kek_versions in batches:
        yield pd.Series(unwrap_series(payload, wrapped, aliases, versions, kek_ids,
                                      kek_versions), dtype=object)


def dek_records_json(payload: Mapping[str, Any], key_alias: str) -> str:
    """The current, enabled DEK records of a scope as JSON (wrapped bytes only, no secret).

    Used where the keyring is not a table (``aws-sm``: a Secrets Manager secret), so the SQL
    functions can read it like the keyring table.
    """
    from ...identifiers import parse_scope
    from ...keyring.base import DekState

    parse_scope(key_alias)
    settings, _ = _provider(payload)
    store = _dek_store(settings)
    import base64

    return json.dumps([
        {
            "key_alias": record.scope,
            "key_version": record.version,
            "key_type": record.key_type,
            "wrapped_key": base64.b64encode(record.wrapped.blob).decode("ascii"),
            "kek_id": record.wrapped.kek_id,
            "kek_version": record.wrapped.kek_version,
        }
        for record in store.current(key_alias)
        if record.state is DekState.ENABLED
    ])


def _dek_store(settings: Settings) -> Any:
    if settings.backend != "aws-sm":
        raise ValueError("dek_records serves the aws-sm back end only; the others use the table")
    from ...keyring import secrets_manager_store

    credential = _uc_service_credential(settings.service_credential)
    return secrets_manager_store.from_settings(
        settings, client=_aws_client(settings, "secretsmanager", credential)
    )


def dek_records_batches(batches: Iterator[tuple[pd.Series, ...]],
                        payload: Mapping[str, Any]) -> Iterator[pd.Series]:
    """Batch handler of ``dek_records(key_alias)``."""
    import pandas as pd

    for batch in batches:
        # One parameter: Databricks passes each batch as a Series, not a 1-tuple.
        aliases = batch[0] if isinstance(batch, tuple) else batch
        yield pd.Series([None if a is None else dek_records_json(payload, a) for a in aliases],
                        dtype=object)
