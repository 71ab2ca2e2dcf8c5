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

**Record integrity** (docs/keyring-integrity.md). ``unwrap_key`` takes the records the
key subquery read from the keyring (every column a record's tag covers, see
:mod:`.passed_records`) and, for the table back ends, the newest revision of the keyring's
integrity record; :func:`unwrap_records` verifies each record exactly as the jobs'
``Keyring`` does (tag under the integrity key, which only the KEK holder can obtain; KEK
pinned to the recorded ids; the retired set) and refuses a forged, edited, untagged or
retired one before any DEK is unwrapped. So a caller of the function can get no key for
bytes of their own, only the DEKs of records the keyring vouches for. ``aws-sm``: the
function reads the secret itself (through a ``Keyring``, which verifies it) and unwraps
only records equal to its current, enabled ones; ``dek_records`` returns only those.

Nothing here logs, prints or raises a key; errors are the project's errors, whose messages
name the scope, version and the permission to check.
"""

from __future__ import annotations

import atexit
import base64
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .passed_records import as_record, passed_row

if TYPE_CHECKING:
    import pandas as pd

    from ...cell.equality import DomainSpec
    from ...config import Settings
    from ...kek.base import KekProvider
    from ...keyring import DekCache, DekStore
    from ...keyring.base import DekRecord
    from ...secret import SecretKey


def settings_payload(settings: Settings,
                     domains: Mapping[str, DomainSpec] | None = None) -> dict[str, Any]:
    """The settings a function's handler needs, as plain data (rendered into its body).

    ``domains``: the equality domains whose keys the function may unwrap (only
    ``decrypt_cells``, ``equality_values`` and, for ``aws-sm``, ``dek_records`` get them;
    ``unwrap_key`` never does), with each one's normal form and index bits.
    """
    payload = {
        "backend": settings.backend,
        "catalog": settings.catalog,
        "schemas": list(settings.schemas),
        "metastore_id": settings.metastore_id,
        "crypto_schema": settings.crypto_schema,
        "keyring_table": settings.keyring_table,
        "service_credential": settings.service_credential,
        "options": dict(sorted(settings.options.items())),
    }
    if domains:
        payload["equality_domains"] = {name: [spec.normal_form, spec.bits]
                                       for name, spec in sorted(domains.items())}
    return payload


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


def configured_scopes(settings: Settings,
                      payload: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The scopes a deployment's functions serve: one per configured schema, and one per
    equality domain of the function's ``payload`` (none for ``unwrap_key``)."""
    from ...identifiers import domain_scope

    domains = (payload or {}).get("equality_domains") or {}
    return frozenset([*(settings.scope(schema) for schema in settings.schemas),
                      *(domain_scope(settings.catalog, domain) for domain in domains)])


def _check_scope(settings: Settings, key_alias: str,
                 payload: Mapping[str, Any] | None = None) -> None:
    from ...errors import KeyringError
    from ...identifiers import parse_key_scope

    parse_key_scope(key_alias)
    served = configured_scopes(settings, payload)
    if key_alias not in served:
        raise KeyringError(
            f"the SQL functions of catalog {settings.catalog} serve the scopes "
            f"{', '.join(sorted(served))}, not {key_alias}: refused"
        )


def _secret_records(deployment: _Deployment, key_alias: str,
                    rows: Sequence[Mapping[str, Any]]) -> list[DekRecord]:
    """``aws-sm``: the keyring is a secret the function's credential reads itself, so each
    record passed must be exactly the scope's current, enabled record of its version (read
    through a ``Keyring``, which verifies every record's tag); those are what is unwrapped."""
    from ...errors import KeyringError
    from ...keyring import Keyring

    store = _dek_store(deployment.settings)
    current = {r.version: r for r in Keyring(store, deployment.provider, "sql", deployment.cache)
               .versions(key_alias) if r.decrypts}
    out = []
    for row in rows:
        record = current.get(row["key_version"])
        passed = (bytes(row["wrapped_key"]), row["kek_id"], row["kek_version"] or "")
        if record is None or passed != (record.wrapped.blob, record.wrapped.kek_id,
                                        record.wrapped.kek_version or ""):
            raise KeyringError(
                f"unwrap_key: the record given for {key_alias} version {row['key_version']} "
                "is not a current, enabled record of the keyring: refused"
            )
        out.append(record)
    return out


def _integrity_guard(deployment: _Deployment, integrity_row: Mapping[str, Any] | None):
    """The integrity check of a keyring: for ``aws-sm`` the secret's own (read by the
    function's credential), else over the integrity record the SQL passed."""
    from ...keyring.integrity import GivenIntegrityRecord, KeyringIntegrity

    s = deployment.settings
    if s.backend == "aws-sm":
        from ...keyring import Keyring

        return Keyring(_dek_store(s), deployment.provider, "sql", deployment.cache).integrity
    view = GivenIntegrityRecord(f"{s.catalog}.{s.crypto_schema}.{s.keyring_table}",
                                None if integrity_row is None else as_record(integrity_row))
    return KeyringIntegrity(view, deployment.provider, "sql", deployment.cache,
                            kek_id=deployment.kek_id)


def integrity_key(payload: Mapping[str, Any], key_alias: str,
                  keyring_integrity: Any = None) -> SecretKey:
    """The keyring's verified integrity key, for a scope of the deployment (unwrapped once
    per worker: the DEK cache keeps it). The subject-id key of erasure scopes derives from
    it (:func:`envelope_encryption.cell.subject.subject_id_key`)."""
    deployment = _worker.deployment(payload)
    _check_scope(deployment.settings, key_alias)
    guard = _integrity_guard(deployment, passed_row(keyring_integrity))
    key = guard.require().key
    deployment.kek_id = guard.configured_kek_id()
    return key


def _table_records(deployment: _Deployment, rows: Sequence[Mapping[str, Any]],
                   integrity_row: Mapping[str, Any] | None) -> list[DekRecord]:
    """Table keyrings: the records passed, each verified as the jobs' ``Keyring`` verifies
    it (tag under the integrity key, KEK pinned, retired set) and refused unless enabled.

    The function cannot read the table (no Spark inside a Unity Catalog Python function):
    the SQL passes the rows and the newest integrity row, and only a record tagged under
    the integrity key, which only the KEK holder can obtain, gets unwrapped.
    """
    from ...errors import UnknownKeyVersion

    records = [as_record(row) for row in rows]
    guard = _integrity_guard(deployment, integrity_row)
    checked = guard.verified(records)
    deployment.kek_id = guard.configured_kek_id()
    for record in checked:
        if not record.decrypts:
            raise UnknownKeyVersion(f"DEK {record.scope} v{record.version} is "
                                    f"{record.state.label}: it decrypts nothing")
    return checked


def unwrap_records(payload: Mapping[str, Any], key_alias: str, records: Sequence[Any],
                   keyring_integrity: Any = None,
                   on_unwrap: Callable[[int], None] | None = None) -> list[bytes | None]:
    """The plaintext DEKs of a scope's keyring records, in order (unwrapped once per worker).

    ``records``: what the key subquery passes (JSON objects of :data:`.passed_records.
    RECORD_COLUMNS`, or mappings of the keyring table's columns; NULL gives NULL) and
    ``keyring_integrity`` the newest revision of the keyring's integrity record, the same
    way. Only scopes of the deployment, and only records the keyring vouches for: a
    forged, edited, untagged or retired record is refused with the project's error (the
    whole call fails: nothing is unwrapped). Bytes, because the callers hand them to a
    cipher (``aes_encrypt`` for ``unwrap_key``, AES-GCM in ``decrypt_cells``): the key is
    revealed here, at the border, and nowhere earlier. ``on_unwrap(version)`` is called for
    each DEK the key service really unwraps (not found in the worker's cache): a counter
    for the local stand-ins and benchmarks.
    """
    from ...errors import KeyringError

    deployment = _worker.deployment(payload)
    _check_scope(deployment.settings, key_alias, payload)
    rows = [passed_row(value) for value in records]
    passed = [row for row in rows if row is not None]
    if any(row["key_alias"] != key_alias for row in passed):
        raise KeyringError(f"unwrap_key: a record passed for {key_alias} is of another "
                           "scope: refused")
    if not passed:
        return [None] * len(rows)  # nothing to unwrap: no key service call, no check
    if deployment.settings.backend == "aws-sm":
        checked = iter(_secret_records(deployment, key_alias, passed))
    else:
        checked = iter(_table_records(deployment, passed, passed_row(keyring_integrity)))
    out: list[bytes | None] = []
    for row in rows:
        if row is None:
            out.append(None)
            continue
        record = next(checked)
        unwrap = deployment.provider.unwrap
        if on_unwrap is not None:
            def unwrap(wrapped, context, _unwrap=unwrap, _version=record.version):
                on_unwrap(_version)
                return _unwrap(wrapped, context)
        dek = deployment.cache.get_or_unwrap(record.context, record.wrapped, unwrap)
        out.append(dek.reveal())
    return out


def unwrap_checked(payload: Mapping[str, Any], record_row: Mapping[str, Any],
                   integrity_row: Mapping[str, Any] | None) -> bytes:
    """The plaintext DEK of one keyring record, after verifying it (:func:`unwrap_records`).

    ``record_row`` is the record's row and ``integrity_row`` the newest revision of the
    keyring's integrity record (``key_type = 'KEYRING_INTEGRITY_KEY'``), each as a mapping of
    the keyring table's columns. A forged, edited, untagged or retired record is refused
    with the project's error, as the jobs' ``Keyring`` refuses it.
    """
    from ...errors import KeyringError

    (dek,) = unwrap_records(payload, record_row["key_alias"], [record_row], integrity_row)
    if dek is None:  # a record row yields a key or an error: never hand on a NULL as a key
        raise KeyringError("unwrap_checked: no record given")
    return dek


def _values(column: Any) -> list[Any]:
    """One row's array argument as a list (Arrow hands numpy arrays; NULL stays empty)."""
    return [] if column is None else list(column)


def unwrap_batches(batches: Iterator[tuple[pd.Series, ...]],
                   payload: Mapping[str, Any]) -> Iterator[pd.Series]:
    """Batch handler of ``unwrap_key(key_alias, records, keyring_integrity)``: one array of
    DEKs per row, in the order of its records."""
    import pandas as pd

    for aliases, records, integrity in batches:
        yield pd.Series([
            None if alias is None else unwrap_records(payload, alias, _values(r), i)
            for alias, r, i in zip(aliases, records, integrity, strict=True)
        ], dtype=object)


def dek_records_json(payload: Mapping[str, Any], key_alias: str) -> str:
    """The current, enabled DEK records of a scope as JSON (wrapped bytes only, no secret).

    Used where the keyring is not a table (``aws-sm``: a Secrets Manager secret), so the SQL
    functions can read it like the keyring table.
    """
    from ...keyring import Keyring

    deployment = _worker.deployment(payload)
    _check_scope(deployment.settings, key_alias, payload)
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
            "key_state": record.state.value,
        }
        for record in records
        if record.decrypts
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
