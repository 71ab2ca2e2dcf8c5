"""The ``aws-sm`` back end: a random 256-bit KEK kept in its own AWS Secrets Manager secret.

The KEK secret (default ``unity_catalog/<metastore_id>/<catalog>/kek``, option
``sm-kek-secret``) holds one JSON document per secret version::

    {"format": "envelope-encryption/kek", "schema_version": 1,
     "algorithm": "AES-256-GCM", "key": "<base64 of 32 random bytes>"}

KEK versions are the secret's versions: a wrapped DEK names the ``VersionId`` that wrapped
it, and unwrap reads exactly that version, so a rotation never strands a DEK. DEKs are
wrapped locally with AES-256-GCM (:mod:`envelope_encryption.kek.aes_key_wrap`); the
associated data binds the DEK's scope and version and the KEK version, so a wrapped DEK
copied to another scope, version or KEK version does not unwrap. Wrapped bytes are
``IV(12) || ciphertext(32) || tag(16)``. There is no password KDF: the original notebooks
ran scrypt on every unwrap; this key is random and used as is.

Every call goes through :func:`.secrets.sm_call`, which turns SDK errors into the project's
errors (naming the ``secretsmanager:`` action). Every secret version read is cached on the
provider by ``VersionId`` (a version's value never changes), so each KEK version costs one
``GetSecretValue`` per provider, and a job builds one provider. The cached version is kept
for at most ``dek-cache-max-age-seconds`` like the DEKs it unwraps, so removing access to
the KEK secret stops a long-running process within that time.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...config import Settings, cache_max_age
from ...errors import ConcurrentModification, KeyNotFound, KeyServiceError, KeyUnwrapFailed
from ...secret import SecretKey
from ..aes_key_wrap import WRAPPED_BYTES, seal, self_test, unseal
from ..base import DEK_BYTES, KekInfo, KekProvider, WrapContext, WrappedDek
from .secrets import (
    CURRENT,
    PENDING,
    ProjectSecret,
    default_kek_secret,
    deterministic_token,
    ensure_secret,
    secret_tags,
    sm_call,
    sm_client_from_settings,
    stages_of,
)

log = logging.getLogger(__name__)

KEK_FORMAT = "envelope-encryption/kek"
KEK_SCHEMA_VERSION = 1


def _kek_document(key: bytes) -> str:
    return json.dumps({
        "format": KEK_FORMAT,
        "schema_version": KEK_SCHEMA_VERSION,
        "algorithm": "AES-256-GCM",
        "key": base64.b64encode(key).decode("ascii"),
    })


class SecretsManagerKekProvider(ProjectSecret, KekProvider):
    """KEK = a random AES-256 key in a Secrets Manager secret; versions = secret versions."""

    backend = "aws-sm"
    name_setting = "--sm-kek-secret"

    def __init__(self, client: Any, secret_name: str, *, kms_key_id: str = "",
                 tags: dict[str, str] | None = None, max_age_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(client, secret_name, kms_key_id=kms_key_id, tags=tags)
        # KEK versions read by this provider: VersionId -> (key, read at). A secret version's
        # value is immutable, so a cached version is never stale; it is dropped after
        # max_age_seconds so that revoked access takes effect (docs/aws-sm.md).
        self._versions: dict[str, tuple[SecretKey, float]] = {}
        self._versions_lock = threading.Lock()
        self._max_age = max_age_seconds
        self._clock = clock

    # -- reading -------------------------------------------------------------------------

    def _parse(self, value: dict[str, Any]) -> SecretKey:
        version_id = value.get("VersionId", "?")
        try:
            document = json.loads(value["SecretString"])
            if document.get("format") != KEK_FORMAT:
                raise ValueError("not a KEK document")
            material = base64.b64decode(document["key"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise KeyServiceError(
                f"secret {self.secret_name} version {version_id} does not hold a KEK of this "
                f"project (expected JSON with format {KEK_FORMAT!r}); check --sm-kek-secret"
            ) from None
        if len(material) != DEK_BYTES:
            raise KeyServiceError(
                f"secret {self.secret_name} version {version_id}: the KEK is not 256 bits"
            )
        return SecretKey(material, label=f"aws-sm kek {version_id}")

    def _cache(self, version_id: str, key: SecretKey) -> None:
        with self._versions_lock:
            self._versions[version_id] = (key, self._clock())

    def _cached(self, version_id: str) -> SecretKey | None:
        with self._versions_lock:
            entry = self._versions.get(version_id)
            if entry is None or self._clock() - entry[1] >= self._max_age:
                self._versions.pop(version_id, None)
                return None
            return entry[0]

    def _read(self, *, version_id: str = "", stage: str = "") -> tuple[str, SecretKey]:
        """(VersionId, key) of one version, by id (cached) or by stage (always asked)."""
        if version_id:
            cached = self._cached(version_id)
            if cached is not None:
                return version_id, cached
        # By id, or by stage: moto answers a bare SecretId with a stale version after a
        # stage move, so a bare SecretId is never sent.
        kwargs: dict[str, Any] = {"SecretId": self.secret_name}
        if version_id:
            kwargs["VersionId"] = version_id
        else:
            kwargs["VersionStage"] = stage or CURRENT
        try:
            value = sm_call("secretsmanager:GetSecretValue", self.secret_name,
                            self.client.get_secret_value, **kwargs)
        except KeyNotFound:
            what = f"version {version_id} of " if version_id else ""
            raise KeyNotFound(
                f"AWS Secrets Manager has no {what}KEK secret {self.secret_name}: run the "
                "kek_setup job (or fix --sm-kek-secret / --aws-region); a missing version "
                "means DEKs wrapped by it cannot be unwrapped: restore that secret version"
            ) from None
        key = self._parse(value)
        self._cache(value["VersionId"], key)
        return value["VersionId"], key

    def _describe_secret(self) -> dict[str, Any]:
        return sm_call("secretsmanager:DescribeSecret", self.secret_name,
                       self.client.describe_secret, SecretId=self.secret_name)

    def describe(self) -> KekInfo:
        version_id, _ = self._read(stage=CURRENT)
        return KekInfo(self.backend, self.secret_name, version_id,
                       details=(("algorithm", "AES-256-GCM"),))

    # -- creating ------------------------------------------------------------------------

    def ensure(self) -> KekInfo:
        """Create the KEK secret with a first random key when it does not exist.

        The create carries a deterministic ClientRequestToken: a retry of the same call
        (after a timeout, or by a second setup job racing this one) cannot add a second
        version; the loser of a race gets ResourceExistsException and uses the winner's key.
        """
        created = ensure_secret(
            self.client, self.secret_name, what=f"KEK secret {self.secret_name}",
            value=_kek_document(os.urandom(DEK_BYTES)),
            token=deterministic_token(self.secret_name, "kek", "initial"),
            description="Envelope encryption key-encryption key (AES-256). Do not edit: "
                        "every version is needed to unwrap the DEKs it wrapped.",
            kms_key_id=self.kms_key_id, tags=self.tags,
        )
        info = self.describe()
        log.info("KEK %s (%s)", info.describe(), "created" if created else "exists")
        return KekInfo(info.backend, info.kek_id, info.kek_version, created, info.details)

    # -- wrapping ------------------------------------------------------------------------

    @staticmethod
    def _aad(context: WrapContext, kek_version: str) -> bytes:
        return context.as_aad() + b"/aws-sm-kek/" + kek_version.encode()

    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        # Always ask for the current version: wraps are rare (new DEK, re-wrap) and must
        # follow a rotation made by another process.
        version_id, kek = self._read(stage=CURRENT)
        return WrappedDek(seal(kek, dek, self._aad(context, version_id)), self.secret_name,
                          version_id)

    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        where = context.describe()
        if wrapped.kek_id != self.secret_name:
            raise KeyUnwrapFailed(
                f"DEK {where} was wrapped by KEK {wrapped.kek_id!r}, not by {self.secret_name!r}:"
                " point --sm-kek-secret at the secret that wrapped it"
            )
        if not wrapped.kek_version:
            raise KeyUnwrapFailed(f"DEK {where} does not name the KEK version that wrapped it")
        if len(wrapped.blob) != WRAPPED_BYTES:
            raise KeyUnwrapFailed(f"wrapped DEK {where} has {len(wrapped.blob)} bytes, not "
                                  f"{WRAPPED_BYTES}: truncated or not made by this back end")
        _, kek = self._read(version_id=wrapped.kek_version)
        plain = unseal(kek, wrapped.blob, self._aad(context, wrapped.kek_version))
        if plain is None:
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} does not unwrap with KEK {self.secret_name} version "
                f"{wrapped.kek_version}: it belongs to another scope/version, or was changed"
            )
        return plain

    # -- rotating ------------------------------------------------------------------------

    def rotate(self) -> KekInfo:
        """New KEK version: put it as AWSPENDING, verify it, then promote it to AWSCURRENT.

        The previous version keeps the AWSPREVIOUS label and stays readable by VersionId,
        so every DEK it wrapped still unwraps until re-wrapped. If a run stops after the put
        and before the promotion, the next run finds the AWSPENDING version and finishes
        with it instead of making another.
        """
        labels = stages_of(self._describe_secret())
        if CURRENT not in labels:
            raise KeyNotFound(f"KEK secret {self.secret_name} has no current version: run "
                              "the kek_setup job first")
        old = labels[CURRENT]
        pending = labels.get(PENDING)
        if pending == old:
            pending = None  # a stray label on the current version: not an unfinished rotation
        if pending is None:
            answer = sm_call(
                "secretsmanager:PutSecretValue", self.secret_name, self.client.put_secret_value,
                SecretId=self.secret_name, ClientRequestToken=str(uuid.uuid4()),
                SecretString=_kek_document(os.urandom(DEK_BYTES)), VersionStages=[PENDING],
            )
            pending = answer["VersionId"]
        else:
            log.info("finishing an interrupted KEK rotation: version %s is AWSPENDING", pending)
        promoted = False
        try:
            # Verify what the service now returns for the new version before anyone wraps
            # with it, then promote it.
            value = sm_call("secretsmanager:GetSecretValue", self.secret_name,
                            self.client.get_secret_value, SecretId=self.secret_name,
                            VersionId=pending, VersionStage=PENDING)
            key = self._parse(value)
            if not self_test(key):
                raise KeyServiceError(
                    f"new KEK version {pending} failed its self-test; not promoted")
            self._cache(pending, key)
            sm_call("secretsmanager:UpdateSecretVersionStage", self.secret_name,
                    self.client.update_secret_version_stage, SecretId=self.secret_name,
                    VersionStage=CURRENT, MoveToVersionId=pending, RemoveFromVersionId=old)
            promoted = True
            sm_call("secretsmanager:UpdateSecretVersionStage", self.secret_name,
                    self.client.update_secret_version_stage, SecretId=self.secret_name,
                    VersionStage=PENDING, RemoveFromVersionId=pending)
        except KeyServiceError:
            self._raise_if_raced(old, pending, promoted)
            raise
        info = self.describe()
        if info.kek_version != pending:
            self._raise_if_raced(old, pending, promoted)
            raise KeyServiceError(f"KEK rotation of {self.secret_name}: version {pending} was "
                                  f"promoted but {info.kek_version} is current")
        log.info("rotated KEK %s: %s -> %s (previous kept as AWSPREVIOUS)",
                 self.secret_name, old, pending)
        return info

    def _raise_if_raced(self, old: str, pending: str, promoted: bool) -> None:
        """ConcurrentModification when another rotation moved the labels under this one.

        Two runs that rotate at once both see ``old`` as current: the second put moves the
        AWSPENDING label to its own version, and the first promotion moves AWSCURRENT, so the
        other run's next call fails with the service's stage message (or finds another
        version current). That is a lost race, not a service failure: nothing was lost (every
        version stays readable by VersionId) and a re-run of ``rotate_kek`` finishes the
        re-wrap under whichever version won. A run that finds an unfinished rotation may
        also promote this run's AWSPENDING version before this run does (``pending`` current
        although this run's promotion did not complete): a race as well.
        """
        labels = stages_of(self._describe_secret())
        current = labels.get(CURRENT)
        if (current not in (old, pending) or (current == pending and not promoted)
                or labels.get(PENDING) not in (None, pending, current)):
            raise ConcurrentModification(
                f"KEK rotation of {self.secret_name}: another rotation ran at the same time "
                f"(version {current} is now current, this run made {pending}); "
                "run rotate_kek again once it finished"
            )


def from_settings(settings: Settings, credential: Any | None = None, *,
                  client: Any = None) -> SecretsManagerKekProvider:
    """The provider a deployment's settings describe. ``credential`` (a botocore session,
    e.g. a UDF's service credential) replaces the one the settings name; ``client`` (tests,
    reuse) replaces the client altogether."""
    return SecretsManagerKekProvider(
        sm_client_from_settings(settings, credential, client),
        settings.option("sm-kek-secret") or default_kek_secret(settings),
        kms_key_id=settings.option("sm-kms-key-id"),
        tags=secret_tags(settings, "kek"),
        max_age_seconds=cache_max_age(settings),
    )
