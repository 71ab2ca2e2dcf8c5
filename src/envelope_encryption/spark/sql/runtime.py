"""What the privileged SQL functions run: unwrap a DEK, list a scope's DEK records.

The Unity Catalog functions ``<catalog>.<crypto>.unwrap_key`` and (``aws-sm``)
``<catalog>.<crypto>.dek_records`` are batch Python UDFs whose handler is two lines that call
:func:`unwrap_batches` / :func:`dek_records_batches` with the deployment's settings. The
handler imports this module from the project's wheel (the function's ENVIRONMENT), so a DEK
is unwrapped by the very provider code the jobs use: the same KMS encryption context, the
same Secrets Manager AAD, the same Key Vault binding tag. Nothing is re-implemented here.

Providers and DEK stores are built by the same factories as the jobs'
(:func:`envelope_encryption.kek.build_kek_provider`,
:func:`envelope_encryption.keyring.build_dek_store`), so every back-end setting is honoured
and AWS clients get the same credentials and retry policy. Credentials: inside a Unity
Catalog UDF the service credential named by the function's ``CREDENTIALS`` clause is
reached through ``databricks.service_credentials`` (the notebook API ``dbutils.credentials``
does not exist there) and passed to the factory. Elsewhere (local runs, tests) the factory
takes it from the settings exactly as for the jobs.

**Why module-level state.** Unity Catalog runs a Python function's module-level code once
per Python worker and then calls the handler for batch after batch, query after query.
Keeping one :class:`_Worker` object at module level (its providers, each with a
:class:`~envelope_encryption.keyring.DekCache` of ``SecretKey`` objects) is what makes each
DEK version unwrapped once per worker, whatever the number of queries, rows or batches.
It is the only such state in the package; tests build fresh objects (a new ``_Worker``, or
distinct settings) instead of clearing it.

**Record integrity** (docs/keyring-integrity.md). :func:`unwrap_checked` verifies a keyring
record's tag (and the keyring's integrity record) before unwrapping it, exactly as the jobs'
``Keyring`` does; ``dek_records`` (aws-sm) returns only verified records. :func:`unwrap_one`
still takes the five columns the rendered SQL passes today and cannot verify them: the SQL
must pass the record and the integrity record (``unwrap_checked``) for the table back ends.

Nothing here logs, prints or raises a key; errors are the project's errors, whose messages
name the scope, version and the permission to check.
"""

from __future__ import annotations

import atexit
import base64
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ...config import Settings
    from ...kek.base import KekProvider
    from ...keyring import DekCache, DekStore


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


def build_provider(settings: Settings) -> KekProvider:
    """The KEK provider of a deployment, with the UDF's service credential when there is one."""
    from ...kek import build_kek_provider

    return build_kek_provider(settings, _uc_service_credential(settings.service_credential))


@dataclass
class _Deployment:
    """What one worker keeps for one deployment: its settings, provider and unwrapped DEKs."""

    settings: Settings
    provider: KekProvider
    cache: DekCache
    kek_id: str | None = None  # the configured KEK's id, asked once per worker


class _Worker:
    """Per-worker state: one :class:`_Deployment` per settings payload (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deployments: dict[str, _Deployment] = {}

    def deployment(self, payload: Mapping[str, Any]) -> _Deployment:
        cache_key = json.dumps(payload, sort_keys=True)
        with self._lock:
            found = self._deployments.get(cache_key)
        if found is None:
            from ...keyring.cache import cache_from_settings

            settings = settings_from_payload(payload)
            built = _Deployment(settings, build_provider(settings), cache_from_settings(settings))
            with self._lock:
                found = self._deployments.setdefault(cache_key, built)
            if found is not built:
                built.provider.close()  # another thread built it first
        return found

    def close(self) -> None:
        """Close every provider (their clients) and forget them. Idempotent."""
        with self._lock:
            deployments, self._deployments = list(self._deployments.values()), {}
        for deployment in deployments:
            deployment.provider.close()


# The one module-level object of this module: see "Why module-level state" above. Its
# providers are closed when the worker's interpreter exits.
_worker = _Worker()
atexit.register(lambda: _worker.close())


def unwrap_one(payload: Mapping[str, Any], wrapped_key: bytes, key_alias: str, key_version: int,
               kek_id: str, kek_version: str) -> bytes:
    """The plaintext DEK of one keyring record (unwrapped once per worker).

    Bytes, because the SQL function returns BINARY to ``aes_decrypt``: the key is revealed
    here, at the border, and nowhere earlier.
    """
    from ...identifiers import parse_scope
    from ...kek.base import WrapContext, WrappedDek

    parse_scope(key_alias)
    deployment = _worker.deployment(payload)
    context = WrapContext(key_alias, int(key_version))
    wrapped = WrappedDek(bytes(wrapped_key), kek_id, kek_version or "")
    return deployment.cache.get_or_unwrap(context, wrapped, deployment.provider.unwrap).reveal()


def unwrap_checked(payload: Mapping[str, Any], record_row: Mapping[str, Any],
                   integrity_row: Mapping[str, Any] | None) -> bytes:
    """The plaintext DEK of one keyring record, after verifying it.

    ``record_row`` is the record's row and ``integrity_row`` the newest revision of the
    keyring's integrity record (``key_type = 'KEYRING_INTEGRITY_KEY'``), each as a mapping of
    the keyring table's columns. A forged, edited, untagged or retired record is refused
    with the project's error, as the jobs' ``Keyring`` refuses it.
    """
    from ...errors import UnknownKeyVersion
    from ...identifiers import parse_scope
    from ...keyring.base import DekState
    from ...keyring.integrity import GivenIntegrityRecord, KeyringIntegrity
    from ...keyring.table_store import record_from_row

    deployment = _worker.deployment(payload)
    record = record_from_row(record_row)
    parse_scope(record.scope)
    s = deployment.settings
    view = GivenIntegrityRecord(f"{s.catalog}.{s.crypto_schema}.{s.keyring_table}",
                                None if integrity_row is None else record_from_row(integrity_row))
    guard = KeyringIntegrity(view, deployment.provider, "sql", deployment.cache,
                             kek_id=deployment.kek_id)
    (checked,) = guard.verified([record])
    deployment.kek_id = guard.configured_kek_id()
    if checked.state is not DekState.ENABLED:
        raise UnknownKeyVersion(f"DEK {record.scope} v{record.version} is retired")
    return deployment.cache.get_or_unwrap(checked.context, checked.wrapped,
                                          deployment.provider.unwrap).reveal()


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
    from ...keyring import Keyring
    from ...keyring.base import DekState

    parse_scope(key_alias)
    deployment = _worker.deployment(payload)
    store = _dek_store(deployment.settings)
    # Through a Keyring: every record is verified (a forged or edited one is refused, a
    # retired one marked so) before the SQL sees it.
    records = Keyring(store, deployment.provider, "sql", deployment.cache).versions(key_alias)

    return json.dumps([
        {
            "key_alias": record.scope,
            "key_version": record.version,
            "key_type": record.key_type,
            "wrapped_key": base64.b64encode(record.wrapped.blob).decode("ascii"),
            "kek_id": record.wrapped.kek_id,
            "kek_version": record.wrapped.kek_version,
        }
        for record in records
        if record.state is DekState.ENABLED
    ])


def _dek_store(settings: Settings) -> DekStore:
    if settings.backend != "aws-sm":
        raise ValueError("dek_records serves the aws-sm back end only; the others use the table")
    from ...keyring import build_dek_store

    return build_dek_store(
        settings, credential=_uc_service_credential(settings.service_credential)
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
