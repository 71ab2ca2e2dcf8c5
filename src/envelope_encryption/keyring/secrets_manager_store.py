"""Wrapped DEK records in an AWS Secrets Manager secret (the ``aws-sm`` back end's keyring).

The secret (default ``unity_catalog/<metastore_id>/<catalog>/deks``, option
``sm-dek-secret``) is separate from the KEK's secret. Its value is one JSON document::

    {
      "format": "envelope-encryption/deks",
      "schema_version": 1,
      "sequence": 12,                  # writes so far; +1 per write
      "based_on": "<VersionId>",       # the secret version this one was derived from
      "scopes": {
        "<catalog>.<schema>": {
          "<DEK version>": [           # revisions, oldest first (the newest is current)
            {"revision": 2, "record_id": "<uuid>", "state": "ENABLED",
             "key_type": "ENCRYPTED_DEK",
             "wrapped": "<base64 of IV(12) || ciphertext(32) || tag(16)>",
             "kek_backend": "aws-sm", "kek_id": "<KEK secret name>",
             "kek_version": "<KEK secret VersionId>",
             "created_at": "2025-01-31T12:00:00.000001", "created_by": "...",
             "modified_at": "...", "modified_by": "...",
             "tag": "<base64 HMAC under the keyring's integrity key>"}
          ]
        },
        "$keyring": {"1": [<the integrity record: same fields, plus
                             "integrity": "<authenticated metadata, JSON>">]}
      }
    }

``tag`` and the ``$keyring`` entry (docs/keyring-integrity.md) were added after the first
release: a document without them still parses, and its records read as untagged.

Times are UTC, ISO 8601 without offset. Only the newest :data:`KEEP_REVISIONS` revisions of a
DEK version are kept (only the newest one when the document nears the limit), because a
secret value is limited to 64 KB; older revisions (wrappings under earlier KEK versions)
stay readable in the secret's earlier versions, and CloudTrail records every write.

**Concurrent writers.** Secrets Manager has no conditional put, but it refuses a second
version with an existing ``VersionId`` and another value. Every write is therefore made as
*the* successor of the version it was derived from: the ``ClientRequestToken`` (which
becomes the ``VersionId``) is a deterministic function of the ``VersionId`` that was read.
Of two writers that read the same version, exactly one creates its successor; the other
gets ``ResourceExistsException``, reads again and re-applies the append rules of
:meth:`DekStore.append` (it then either succeeds on top of the winner or raises
:class:`ConcurrentModification`). After each put the store confirms that ``AWSPREVIOUS`` is the
version it read; if not, someone outside this protocol (console, another tool) wrote in
between, and the store merges that version's records back in.

Residual risks, stated honestly: the guarantee needs every writer to use this store; a
writer that read a version, then paused until AWS purged that version's successor (AWS
purges unlabelled versions only beyond 100 versions and after 24 hours) could fork the
history; an outside write whose document is not of this format is refused, not merged.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..errors import ConcurrentModification, KeyNotFound, KeyringError
from ..identifiers import parse_key_scope
from ..kek.aws.secrets import (
    CURRENT,
    PREVIOUS,
    ProjectSecret,
    default_dek_secret,
    deterministic_token,
    ensure_secret,
    error_code,
    secret_tags,
    sm_call,
    sm_client_from_settings,
    stages_of,
    translate,
)
from ..kek.base import WrappedDek
from .base import INTEGRITY_KEY_TYPE, DekRecord, DekState, DekStore, PurgeReport

log = logging.getLogger(__name__)

STORE_FORMAT = "envelope-encryption/deks"
STORE_SCHEMA_VERSION = 1
KEEP_REVISIONS = 2  # the current wrapping and the one before it (1 near the size limit)
SECRET_VALUE_LIMIT = 65_536  # bytes: AWS's limit for a SecretString
MAX_ATTEMPTS = 8  # reads and puts per append before giving up under heavy contention


def empty_document() -> dict[str, Any]:
    # Deterministic (no timestamp): two setups racing to create the secret send the same
    # value with the same token, and both succeed on one version.
    return {"format": STORE_FORMAT, "schema_version": STORE_SCHEMA_VERSION, "sequence": 0,
            "based_on": None, "scopes": {}}


def _encode(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def record_to_json(record: DekRecord) -> dict[str, Any]:
    return {
        "revision": record.revision,
        "record_id": record.record_id,
        "state": record.state.value,
        "key_type": record.key_type,
        "wrapped": base64.b64encode(record.wrapped.blob).decode("ascii"),
        "kek_backend": record.kek_backend,
        "kek_id": record.wrapped.kek_id,
        "kek_version": record.wrapped.kek_version,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "modified_at": record.modified_at.isoformat(),
        "modified_by": record.modified_by,
        **({} if record.tag is None else {"tag": base64.b64encode(record.tag).decode("ascii")}),
        **({"integrity": record.integrity} if record.integrity else {}),
    }


def record_from_json(scope: str, version: int, item: dict[str, Any]) -> DekRecord:
    return DekRecord(
        scope=scope,
        version=version,
        wrapped=WrappedDek(base64.b64decode(item["wrapped"], validate=True), item["kek_id"],
                           item["kek_version"]),
        kek_backend=item["kek_backend"],
        state=DekState(item["state"]),
        revision=int(item["revision"]),
        created_by=item["created_by"],
        modified_by=item["modified_by"],
        created_at=datetime.fromisoformat(item["created_at"]),
        modified_at=datetime.fromisoformat(item["modified_at"]),
        record_id=item["record_id"],
        key_type=item["key_type"],
        tag=base64.b64decode(item["tag"], validate=True) if item.get("tag") else None,
        integrity=item.get("integrity", ""),
    )


def document_records(document: dict[str, Any]) -> list[DekRecord]:
    return [
        record_from_json(scope, int(version), item)
        for scope, versions in document["scopes"].items()
        for version, revisions in versions.items()
        for item in revisions
    ]


def _slot_conflict(document: dict[str, Any], record: DekRecord) -> str | None:
    """Why ``record`` may not be appended to ``document`` (the DekStore.append rules)."""
    versions = document["scopes"].get(record.scope, {})
    revisions = versions.get(str(record.version), [])
    if record.revision == 1:
        highest = max((int(v) for v in versions), default=0)
        if record.version != highest + 1:
            return (f"{record.scope} already has DEK version {highest}; v{record.version} "
                    "cannot be created now")
        return None
    newest = max((int(r["revision"]) for r in revisions), default=0)
    if record.revision != newest + 1:
        return (f"{record.scope} v{record.version} is at revision {newest}; revision "
                f"{record.revision} is stale")
    return None


def _with_record(document: dict[str, Any], record: DekRecord, keep: int) -> dict[str, Any]:
    """A copy of ``document`` with ``record`` added and all but ``keep`` revisions pruned."""
    new = json.loads(json.dumps(document))
    revisions = new["scopes"].setdefault(record.scope, {}).setdefault(str(record.version), [])
    revisions.append(record_to_json(record))
    for versions in new["scopes"].values():
        for items in versions.values():
            items.sort(key=lambda item: int(item["revision"]))
            del items[:-keep]
    return new


def _fits(document: dict[str, Any]) -> bool:
    return len(_encode(document).encode()) <= SECRET_VALUE_LIMIT


def _has_record(document: dict[str, Any], record_id: str) -> bool:
    return any(
        item["record_id"] == record_id
        for versions in document["scopes"].values()
        for revisions in versions.values()
        for item in revisions
    )


class SecretsManagerDekStore(ProjectSecret, DekStore):
    """DEK records as one JSON document in a Secrets Manager secret."""

    name_setting = "--sm-dek-secret"

    @property
    def identity(self) -> str:  # type: ignore[override]
        return self.secret_name

    # -- reading -------------------------------------------------------------------------

    def _parse(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            document = json.loads(value["SecretString"])
            ok = (isinstance(document, dict) and document.get("format") == STORE_FORMAT
                  and isinstance(document.get("scopes"), dict))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise KeyringError(
                f"{self.description} version {value.get('VersionId')} is not a DEK store of "
                f"this project (JSON with format {STORE_FORMAT!r}): check --sm-dek-secret; if "
                "it was edited by hand, make its previous version current again"
            )
        if document.get("schema_version") != STORE_SCHEMA_VERSION:
            raise KeyringError(
                f"{self.description} has schema version {document.get('schema_version')}; "
                f"this release reads version {STORE_SCHEMA_VERSION}: upgrade the wheel"
            )
        return document

    def _read(self, *, version_id: str = "") -> tuple[str, dict[str, Any]]:
        """(VersionId, document) of the current version, or of one version by id."""
        kwargs: dict[str, Any] = {"SecretId": self.secret_name}
        if version_id:
            kwargs["VersionId"] = version_id
        else:
            kwargs["VersionStage"] = CURRENT  # never bare: see the moto note in kek.aws.secrets
        try:
            value = sm_call("secretsmanager:GetSecretValue", self.secret_name,
                            self.client.get_secret_value, **kwargs)
        except KeyNotFound:
            raise KeyringError(
                f"{self.description} does not exist (or has no value): run the kek_setup job, "
                "or fix --sm-dek-secret and --aws-region"
            ) from None
        return value["VersionId"], self._parse(value)

    def history(self, scope: str | None = None) -> list[DekRecord]:
        if scope is not None:
            parse_key_scope(scope)
        _, document = self._read()
        return [r for r in document_records(document)
                if r.key_type != INTEGRITY_KEY_TYPE and (scope is None or r.scope == scope)]

    def integrity_history(self) -> list[DekRecord]:
        _, document = self._read()
        return [r for r in document_records(document) if r.key_type == INTEGRITY_KEY_TYPE]

    # -- creating ------------------------------------------------------------------------

    def ensure(self) -> None:
        created = ensure_secret(
            self.client, self.secret_name, what=self.description,
            value=_encode(empty_document()),
            token=deterministic_token(self.secret_name, "deks", "initial"),
            description="Envelope encryption: wrapped data-encryption keys (JSON, see "
                        "docs/aws-sm.md). Written only by the envelope-encryption jobs.",
            kms_key_id=self.kms_key_id, tags=self.tags,
        )
        if created:
            log.info("created %s", self.description)
        self._read()  # fails clearly when the secret holds something else

    # -- writing -------------------------------------------------------------------------

    def append(self, record: DekRecord) -> None:
        if record.key_type != INTEGRITY_KEY_TYPE:
            parse_key_scope(record.scope)
        for _attempt in range(MAX_ATTEMPTS):
            read_id, document = self._read()
            if _has_record(document, record.record_id):
                return  # an earlier try of this very append landed
            conflict = _slot_conflict(document, record)
            if conflict:
                raise ConcurrentModification(f"{self.description}: {conflict}")
            new = _with_record(document, record, KEEP_REVISIONS)
            if not _fits(new):
                # Near the 64 KB limit: keep only the current revision of every version.
                new = _with_record(document, record, 1)
            new["sequence"] = int(document.get("sequence", 0)) + 1
            new["based_on"] = read_id
            written = self._put_successor(read_id, new)
            if written is None:
                log.info("%s changed while appending %s v%d; reading it again",
                         self.description, record.scope, record.version)
                continue
            self._confirm(read_id, written, record)
            return
        raise ConcurrentModification(
            f"{self.description}: gave up appending {record.scope} v{record.version} after "
            f"{MAX_ATTEMPTS} attempts: too many concurrent writers; run the job again"
        )

    def _put_successor(self, read_id: str, document: dict[str, Any]) -> str | None:
        """Put ``document`` as the one successor of version ``read_id``.

        Returns the new VersionId, or None when another writer already made the successor.
        """
        body = _encode(document)
        size = len(body.encode())
        if size > SECRET_VALUE_LIMIT:
            raise KeyringError(
                f"{self.description} would hold {size} bytes, over the 64 KB limit of a "
                "secret value: retire unused DEK versions, or give further catalogs their own "
                "secret (--sm-dek-secret); see docs/aws-sm.md for the capacity"
            )
        token = deterministic_token(self.secret_name, "deks", "after", read_id)
        try:
            answer = self.client.put_secret_value(
                SecretId=self.secret_name, ClientRequestToken=token, SecretString=body
            )
        except (ClientError, BotoCoreError) as error:
            if isinstance(error, ClientError) and error_code(error) == "ResourceExistsException":
                return None
            raise translate(error, action="secretsmanager:PutSecretValue",
                            resource=self.secret_name) from None
        return str(answer["VersionId"])

    def _confirm(self, read_id: str, written: str, record: DekRecord) -> None:
        """Check that our write replaced the version we read; repair when it did not."""
        for _attempt in range(MAX_ATTEMPTS):
            labels = stages_of(sm_call("secretsmanager:DescribeSecret", self.secret_name,
                                       self.client.describe_secret, SecretId=self.secret_name))
            if labels.get(CURRENT) != written:
                # Later writers already built on our version (they read it, or got
                # ResourceExists and read again); nothing of ours can be lost.
                return
            replaced = labels.get(PREVIOUS)
            if replaced == read_id or replaced is None:
                return
            # Someone wrote between our read and our put without this protocol (console,
            # another tool). Merge that version's records back in; theirs landed first.
            log.warning("%s: version %s was written outside the DEK store protocol; merging "
                        "its records into %s", self.description, replaced, written)
            _, theirs = self._read(version_id=replaced)
            _, ours = self._read(version_id=written)
            merged, ours_dropped = _merge(ours, theirs, record)
            merged["sequence"] = max(int(ours.get("sequence", 0)),
                                     int(theirs.get("sequence", 0))) + 1
            merged["based_on"] = written
            repaired = self._put_successor(written, merged)
            if repaired is None:
                return  # a protocol writer built on ours already; it read our version
            if ours_dropped:
                raise ConcurrentModification(
                    f"{self.description}: {record.scope} v{record.version} revision "
                    f"{record.revision} was taken by a concurrent change; run the job again"
                )
            read_id, written = written, repaired
        raise ConcurrentModification(f"{self.description}: could not confirm the write of "
                                     f"{record.scope} v{record.version}; run the job again")

    # -- destroying ----------------------------------------------------------------------

    def purge(self, scope: str, version: int, keep_record_id: str) -> PurgeReport:
        """Remove ``scope`` v``version``'s wrapped key from every secret version this store
        can reach (:func:`.secrets_manager_purge.purge`)."""
        from .secrets_manager_purge import purge

        return purge(self, scope, version, keep_record_id)


def _merge(
    ours: dict[str, Any], theirs: dict[str, Any], record: DekRecord
) -> tuple[dict[str, Any], bool]:
    """Our document plus every revision of theirs we lack. On a clash theirs wins (it landed
    first) and our ``record`` is dropped. Returns (merged, our record dropped)."""
    merged = json.loads(json.dumps(ours))
    dropped = False
    for scope, versions in theirs["scopes"].items():
        for version, revisions in versions.items():
            target = merged["scopes"].setdefault(scope, {}).setdefault(version, [])
            for item in revisions:
                same_slot = [t for t in target if int(t["revision"]) == int(item["revision"])]
                if any(t["record_id"] == item["record_id"] for t in same_slot):
                    continue
                for clash in same_slot:
                    if clash["record_id"] == record.record_id:
                        dropped = True
                    target.remove(clash)
                target.append(item)
            target.sort(key=lambda item: int(item["revision"]))
            del target[:-KEEP_REVISIONS]
    return merged, dropped


def from_settings(settings: Settings, credential: Any | None = None, *,
                  client: Any = None) -> SecretsManagerDekStore:
    """The DEK store a deployment's settings describe (``credential`` and ``client`` as for
    the KEK provider's ``from_settings``)."""
    secret = settings.option("sm-dek-secret") or default_dek_secret(settings)
    return SecretsManagerDekStore(sm_client_from_settings(settings, credential, client), secret,
                                  kms_key_id=settings.option("sm-kms-key-id"),
                                  tags=secret_tags(settings, "deks"))
