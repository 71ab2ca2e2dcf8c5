"""Removing a destroyed DEK version's wrapped key from the aws-sm DEK store's secret.

The secret's current value is one JSON document (:mod:`.secrets_manager_store`); every
write makes a new secret version and Secrets Manager keeps the earlier ones. A destroy
therefore:

1. rewrites the current value without any revision of the version but its tombstone;
2. moves ``AWSPREVIOUS`` off a version that holds the key by writing the clean value once
   more (a put moves ``AWSPREVIOUS`` to the version it replaces);
3. removes every other label from versions that hold it.

Secrets Manager has no call that deletes one version of a secret: versions left without a
label are deprecated, and AWS deletes them itself once the secret has more than 100
versions, none younger than 24 hours. Those are reported (``PurgeReport.left``) and
documented in docs/key-lifecycle.md with what to do about them.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..errors import ConcurrentModification, KeyringError
from ..identifiers import parse_key_scope
from ..kek.aws.secrets import CURRENT, PREVIOUS, sm_call
from .base import PurgeReport

_ATTEMPTS = 8


class SecretsManagerDekStore(Protocol):
    """What the purge uses of :class:`.secrets_manager_store.SecretsManagerDekStore` (which
    calls it: a protocol, so that this module does not import the one that imports it)."""

    client: Any
    description: str
    secret_name: str

    def _read(self, *, version_id: str = "") -> tuple[str, dict[str, Any]]: ...

    def _put_successor(self, read_id: str, document: dict[str, Any]) -> str | None: ...


def holds_key(document: dict[str, Any], scope: str, version: int) -> bool:
    """Whether ``document`` holds wrapped key material of ``scope`` v``version``."""
    revisions = document.get("scopes", {}).get(scope, {}).get(str(version), [])
    return any(item.get("wrapped") for item in revisions)


def without_key(document: dict[str, Any], scope: str, version: int,
                keep_record_id: str) -> dict[str, Any]:
    """A copy of ``document`` keeping, of ``scope`` v``version``, only ``keep_record_id``."""
    new = json.loads(json.dumps(document))
    revisions = new["scopes"].get(scope, {}).get(str(version), [])
    revisions[:] = [item for item in revisions if item["record_id"] == keep_record_id]
    return new


def purge(store: SecretsManagerDekStore, scope: str, version: int,
          keep_record_id: str) -> PurgeReport:
    """Steps 1-3 of the module docstring; idempotent (a second run removes nothing)."""
    parse_key_scope(scope)
    report = PurgeReport()
    if _rewrite_current(store, scope, version, keep_record_id, clean_only=False):
        report.removed.append(f"the wrapped key from the current value of {store.description}")
    unlabelled = 0
    for version_id, labels in secret_versions(store):
        _, document = store._read(version_id=version_id)
        if not holds_key(document, scope, version):
            continue
        if CURRENT in labels:
            raise KeyringError(f"{store.description}: the current value still holds {scope} "
                               f"v{version} after the purge; run the job again")
        if PREVIOUS in labels:
            _rewrite_current(store, scope, version, keep_record_id, clean_only=True)
            report.removed.append(f"the {PREVIOUS} label from version {version_id}")
        for label in labels:
            if label == PREVIOUS:
                continue
            sm_call("secretsmanager:UpdateSecretVersionStage", store.secret_name,
                    store.client.update_secret_version_stage, SecretId=store.secret_name,
                    VersionStage=label, RemoveFromVersionId=version_id)
            report.removed.append(f"the label {label} from version {version_id}")
        unlabelled += 1
    if unlabelled:
        report.left.append(
            f"{unlabelled} earlier version(s) of {store.description}, now without a label, "
            "still hold the wrapped key: Secrets Manager cannot delete a single version; it "
            "deletes unlabelled versions itself once the secret has more than 100 versions "
            "(none younger than 24 hours)")
    return report


def _rewrite_current(store: SecretsManagerDekStore, scope: str, version: int,
                     keep_record_id: str, *, clean_only: bool) -> bool:
    """Put a successor of the current value without ``scope`` v``version``'s key: when the
    current value holds it, or (``clean_only``, to move ``AWSPREVIOUS``) when it does not.
    Whether a value was written."""
    for _attempt in range(_ATTEMPTS):
        read_id, document = store._read()
        if holds_key(document, scope, version) == clean_only:
            return False
        new = without_key(document, scope, version, keep_record_id)
        new["sequence"] = int(document.get("sequence", 0)) + 1
        new["based_on"] = read_id
        if store._put_successor(read_id, new) is not None:
            return True
    raise ConcurrentModification(f"{store.description}: gave up removing {scope} v{version} "
                                 "under concurrent writers; run the job again")


def secret_versions(store: SecretsManagerDekStore) -> list[tuple[str, list[str]]]:
    """(VersionId, labels) of every version of the store's secret, deprecated ones too."""
    out: list[tuple[str, list[str]]] = []
    token = ""
    while True:
        kwargs: dict[str, Any] = {"SecretId": store.secret_name, "IncludeDeprecated": True}
        if token:
            kwargs["NextToken"] = token
        page = sm_call("secretsmanager:ListSecretVersionIds", store.secret_name,
                       store.client.list_secret_version_ids, **kwargs)
        out += [(v["VersionId"], list(v.get("VersionStages") or [])) for v in page["Versions"]]
        token = page.get("NextToken") or ""
        if not token:
            return out
