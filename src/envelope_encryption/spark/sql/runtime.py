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
``Keyring`` does; ``dek_records`` and the unwrap of aws-sm records go through a ``Keyring``
and so verify every record. For the table back ends :func:`unwrap_records` still takes the
columns the rendered SQL passes (version, wrapped key, KEK id and version), which carry no
tag: the SQL must pass the records' tags and the integrity record (``unwrap_checked``)
before the table keyring's records are verified on this path too.

Nothing here logs, prints or raises a key; errors are the project's errors, whose messages
name the scope, version and the permission to check.
"""

from __future__ import annotations

import atexit
import base64
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...kek.base import WrapContext, WrappedDek

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


def configured_scopes(settings: Settings) -> frozenset[str]:
    """The scopes a deployment's functions serve: one per configured schema."""
    return frozenset(settings.scope(schema) for schema in settings.schemas)


def _check_scope(settings: Settings, key_alias: str) -> None:
    from ...errors import KeyringError
    from ...identifiers import parse_scope

    parse_scope(key_alias)
    if key_alias not in configured_scopes(settings):
        raise KeyringError(
            f"the SQL functions of catalog {settings.catalog} serve the scopes "
            f"{', '.join(sorted(configured_scopes(settings)))}, not {key_alias}: refused"
        )


@dataclass(frozen=True)
class _Record:
    """One keyring record as the key subquery passes it to ``unwrap_key``."""

    version: int
    wrapped: WrappedDek


def _keyring_records(deployment: _Deployment, key_alias: str) -> dict[int, WrappedDek] | None:
    """The scope's current, enabled records, where the function can read the keyring itself.

    ``aws-sm``: the keyring is a secret the function's credential reads, so the records
    passed in must be exactly those. The keyring table cannot be read from inside a Unity
    Catalog Python function (no Spark there): ``None``, see :func:`_verify_passed_record`.
    """
    from ...keyring import Keyring
    from ...keyring.base import DekState

    if deployment.settings.backend != "aws-sm":
        return None
    store = _dek_store(deployment.settings)
    # Through a Keyring: records whose tag does not verify are refused, not compared.
    records = Keyring(store, deployment.provider, "sql", deployment.cache).versions(key_alias)
    return {r.version: r.wrapped for r in records if r.state is DekState.ENABLED}


def _verify_passed_record(deployment: _Deployment, key_alias: str, record: _Record,
                          keyring: dict[int, WrappedDek] | None) -> None:
    """Refuse a record that is not one of the scope's current, enabled keyring records.

    ``aws-sm``: compared with what the function read from the secret. Table keyring: the
    hook for the keyring's record authentication (a tag over scope, version, state, key
    type, wrapped bytes and KEK id that only the KEK holder can compute); until the records
    carry it, what binds a passed blob is the KEK's own binding to (scope, version) (KMS
    encryption context, aws-sm AAD, Key Vault tag) and the scope check above.
    """
    from ...errors import KeyringError

    if keyring is None:
        return
    current = keyring.get(record.version)
    if current is None or (current.blob, current.kek_id, current.kek_version or "") != (
            record.wrapped.blob, record.wrapped.kek_id, record.wrapped.kek_version or ""):
        raise KeyringError(
            f"unwrap_key: the record given for {key_alias} version {record.version} is not a "
            "current, enabled record of the keyring: refused"
        )


def unwrap_records(payload: Mapping[str, Any], key_alias: str, versions: Sequence[Any],
                   wrapped_keys: Sequence[Any], kek_ids: Sequence[Any],
                   kek_versions: Sequence[Any]) -> list[bytes | None]:
    """The plaintext DEKs of a scope's keyring records, in order (unwrapped once per worker).

    Only scopes of the deployment, and (where the function can read the keyring) only its
    current, enabled records. Bytes, because the SQL function returns them to
    ``aes_decrypt``: the key is revealed here, at the border, and nowhere earlier.
    """
    from ...errors import KeyringError

    deployment = _worker.deployment(payload)
    _check_scope(deployment.settings, key_alias)
    if not len(versions) == len(wrapped_keys) == len(kek_ids) == len(kek_versions):
        raise KeyringError("unwrap_key: its record arrays differ in length")
    keyring: dict[int, WrappedDek] | None = None
    out: list[bytes | None] = []
    for version, blob, kek_id, kek_version in zip(
            versions, wrapped_keys, kek_ids, kek_versions, strict=True):
        if blob is None or version is None:
            out.append(None)
            continue
        record = _Record(int(version), WrappedDek(bytes(blob), kek_id, kek_version or ""))
        if keyring is None:
            keyring = _keyring_records(deployment, key_alias)
        _verify_passed_record(deployment, key_alias, record, keyring)
        context = WrapContext(key_alias, record.version)
        dek = deployment.cache.get_or_unwrap(context, record.wrapped, deployment.provider.unwrap)
        out.append(dek.reveal())
    return out


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


def _values(column: Any) -> list[Any]:
    """One row's array argument as a list (Arrow hands numpy arrays; NULL stays empty)."""
    return [] if column is None else list(column)


def unwrap_batches(batches: Iterator[tuple[pd.Series, ...]],
                   payload: Mapping[str, Any]) -> Iterator[pd.Series]:
    """Batch handler of ``unwrap_key(key_alias, key_versions, wrapped_keys, kek_ids,
    kek_versions)``: one array of DEKs per row."""
    import pandas as pd

    for aliases, versions, wrapped, kek_ids, kek_versions in batches:
        yield pd.Series([
            None if alias is None else unwrap_records(
                payload, alias, _values(v), _values(w), _values(i), _values(kv))
            for alias, v, w, i, kv in zip(aliases, versions, wrapped, kek_ids, kek_versions,
                                          strict=True)
        ], dtype=object)


def dek_records_json(payload: Mapping[str, Any], key_alias: str) -> str:
    """The current, enabled DEK records of a scope as JSON (wrapped bytes only, no secret).

    Used where the keyring is not a table (``aws-sm``: a Secrets Manager secret), so the SQL
    functions can read it like the keyring table.
    """
    from ...keyring import Keyring
    from ...keyring.base import DekState

    deployment = _worker.deployment(payload)
    _check_scope(deployment.settings, key_alias)
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
