"""The ``aws-sm`` back end: a random 256-bit KEK kept in its own AWS Secrets Manager secret.

The KEK secret (default ``unity_catalog/<metastore_id>/<catalog>/kek``, option
``sm-kek-secret``) holds one JSON document per secret version::

    {"format": "envelope-encryption/kek", "schema_version": 1,
     "algorithm": "AES-256-GCM", "key": "<base64 of 32 random bytes>"}

KEK versions are the secret's versions: a wrapped DEK names the ``VersionId`` that wrapped
it, and unwrap reads exactly that version, so a rotation never strands a DEK. DEKs are
wrapped locally with AES-256-GCM; the associated data binds the DEK's scope and version and
the KEK version, so a wrapped DEK copied to another scope, version or KEK version does not
unwrap. Wrapped bytes are ``IV(12) || ciphertext(32) || tag(16)``. There is no password
KDF: the original notebooks ran scrypt on every unwrap; this key is random and used as is.

Every call goes through :func:`sm_call`, which turns SDK errors into the project's errors
(naming the ``secretsmanager:`` action). Every secret version read is cached per process by
``VersionId`` (a version's value never changes), so each KEK version costs one
``GetSecretValue`` per process. Moto note: ``get_secret_value`` is always called with a
``VersionId`` or ``VersionStage="AWSCURRENT"`` (moto returns a stale version without one
after a stage move).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from ..errors import (
    ConfigError,
    EnvelopeError,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyUnwrapFailed,
)
from ..secret import SecretKey
from .aws_errors import silence_botocore_body_logs, translate_aws_error, translate_botocore_error
from .aws_session import aws_client
from .base import DEK_BYTES, KekInfo, KekProvider, WrapContext, WrappedDek

log = logging.getLogger(__name__)

KEK_FORMAT = "envelope-encryption/kek"
KEK_SCHEMA_VERSION = 1
IV_BYTES = 12
TAG_BYTES = 16
WRAPPED_BYTES = IV_BYTES + DEK_BYTES + TAG_BYTES
CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
PENDING = "AWSPENDING"
# Namespace of the deterministic ClientRequestTokens (idempotent creates).
TOKEN_NAMESPACE = uuid.UUID("5b0b7f3e-2f0e-4d57-9a55-1c1a2f6e4e11")


def default_kek_secret(settings: Settings) -> str:
    return f"unity_catalog/{settings.metastore_id}/{settings.catalog}/kek"


def default_dek_secret(settings: Settings) -> str:
    return f"unity_catalog/{settings.metastore_id}/{settings.catalog}/deks"


def default_legacy_secret(settings: Settings) -> str:
    """The secret the original notebooks wrote (password, salt and wrapped DEKs together)."""
    return f"unity_catalog/{settings.metastore_id}/{settings.catalog}"


def deterministic_token(*parts: str) -> str:
    """A ClientRequestToken that is the same on every retry of the same logical write.

    Secrets Manager makes a version's id equal to its token and refuses a second version
    with the same id and another value, so a retried create or put can never add a second
    version.
    """
    return str(uuid.uuid5(TOKEN_NAMESPACE, "/".join(parts)))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def translate(error: Exception, *, action: str, resource: str) -> EnvelopeError:
    """The project error for an SDK error of one Secrets Manager call.

    A secret scheduled for deletion (AWS says InvalidRequestException) is reported as such,
    with the command that restores it; everything else goes to the shared AWS translation.
    """
    if isinstance(error, ClientError):
        message = str(error.response.get("Error", {}).get("Message", ""))
        if error_code(error) == "InvalidRequestException" and "delet" in message.lower():
            return KeyDisabled(
                f"AWS Secrets Manager secret {resource} is scheduled for deletion ({action}): "
                f"restore it with 'aws secretsmanager restore-secret --secret-id {resource}' "
                "before anything else; the keys it holds are needed to read encrypted data"
            )
        return translate_aws_error(error, action=action, resource=resource)
    if isinstance(error, BotoCoreError):
        return translate_botocore_error(error, action=action, resource=resource)
    raise TypeError(f"not an SDK error: {type(error).__name__}")


def sm_call(action: str, resource: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    """One Secrets Manager call; SDK errors become the project's errors (``from None``).

    ``action`` is the IAM action (``secretsmanager:GetSecretValue``), named in the message.
    """
    try:
        return call(**kwargs)
    except (ClientError, BotoCoreError) as error:
        raise translate(error, action=action, resource=resource) from None


def stages_of(description: dict[str, Any]) -> dict[str, str]:
    """Staging label -> VersionId, from a DescribeSecret answer."""
    labels: dict[str, str] = {}
    for version_id, stages in (description.get("VersionIdsToStages") or {}).items():
        for stage in stages:
            labels[stage] = version_id
    return labels


def sm_client_from_settings(settings: Settings) -> Any:
    """A Secrets Manager client for ``settings`` (see :mod:`.aws_session`)."""
    return aws_client(settings, "secretsmanager")


# Process-wide cache of KEK versions: (secret name, VersionId) -> key. A secret version's
# value is immutable, so a cached version can never be stale.
_kek_cache_lock = threading.Lock()
_kek_cache: dict[tuple[str, str], SecretKey] = {}


def clear_kek_cache() -> None:
    """Forget every KEK version read by this process (tests; after a KEK leak drill)."""
    with _kek_cache_lock:
        _kek_cache.clear()


def _kek_document(key: bytes) -> str:
    return json.dumps({
        "format": KEK_FORMAT,
        "schema_version": KEK_SCHEMA_VERSION,
        "algorithm": "AES-256-GCM",
        "key": base64.b64encode(key).decode("ascii"),
    })


class SecretsManagerKekProvider(KekProvider):
    """KEK = a random AES-256 key in a Secrets Manager secret; versions = secret versions."""

    backend = "aws-sm"

    def __init__(
        self,
        client: Any,
        secret_name: str,
        *,
        kms_key_id: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        if not secret_name:
            raise ConfigError("the aws-sm back end needs a KEK secret name (--sm-kek-secret)")
        silence_botocore_body_logs()
        self.client = client
        self.secret_name = secret_name
        self.kms_key_id = kms_key_id
        self.tags = dict(tags or {})

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
        with _kek_cache_lock:
            _kek_cache[(self.secret_name, version_id)] = key

    def _read(self, *, version_id: str = "", stage: str = "") -> tuple[str, SecretKey]:
        """(VersionId, key) of one version, by id (cached) or by stage (always asked)."""
        if version_id:
            with _kek_cache_lock:
                cached = _kek_cache.get((self.secret_name, version_id))
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
        created = False
        try:
            description = self._describe_secret()
        except KeyNotFound:
            description = None
        if description is not None and description.get("DeletedDate"):
            raise KeyDisabled(
                f"KEK secret {self.secret_name} is scheduled for deletion: restore it with "
                f"'aws secretsmanager restore-secret --secret-id {self.secret_name}'"
            )
        if description is None:
            created = self._create()
        elif CURRENT not in stages_of(description):
            # The secret exists without a value (made by hand or by IaC): give it its first key.
            sm_call("secretsmanager:PutSecretValue", self.secret_name,
                    self.client.put_secret_value, SecretId=self.secret_name,
                    ClientRequestToken=deterministic_token(self.secret_name, "kek", "initial"),
                    SecretString=_kek_document(os.urandom(DEK_BYTES)))
            created = True
        info = self.describe()
        log.info("KEK %s (%s)", info.describe(), "created" if created else "exists")
        return KekInfo(info.backend, info.kek_id, info.kek_version, created, info.details)

    def _create(self) -> bool:
        kwargs: dict[str, Any] = {
            "Name": self.secret_name,
            "ClientRequestToken": deterministic_token(self.secret_name, "kek", "initial"),
            "SecretString": _kek_document(os.urandom(DEK_BYTES)),
            "Description": "Envelope encryption key-encryption key (AES-256). Do not edit: "
                           "every version is needed to unwrap the DEKs it wrapped.",
        }
        if self.kms_key_id:
            kwargs["KmsKeyId"] = self.kms_key_id
        if self.tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())]
        try:
            self.client.create_secret(**kwargs)
        except (ClientError, BotoCoreError) as error:
            if isinstance(error, ClientError) and error_code(error) == "ResourceExistsException":
                return False  # created by a concurrent setup (or an earlier try): use it
            raise translate(error, action="secretsmanager:CreateSecret",
                            resource=self.secret_name) from None
        return True

    # -- wrapping ------------------------------------------------------------------------

    @staticmethod
    def _aad(context: WrapContext, kek_version: str) -> bytes:
        return context.as_aad() + b"/aws-sm-kek/" + kek_version.encode()

    def wrap(self, dek: SecretKey, context: WrapContext) -> WrappedDek:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # Always ask for the current version: wraps are rare (new DEK, re-wrap) and must
        # follow a rotation made by another process.
        version_id, kek = self._read(stage=CURRENT)
        iv = os.urandom(IV_BYTES)
        blob = iv + AESGCM(kek.reveal()).encrypt(iv, dek.reveal(), self._aad(context, version_id))
        return WrappedDek(blob, self.secret_name, version_id)

    def unwrap(self, wrapped: WrappedDek, context: WrapContext) -> SecretKey:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        where = f"{context.scope} v{context.version}"
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
        try:
            plain = AESGCM(kek.reveal()).decrypt(
                wrapped.blob[:IV_BYTES], wrapped.blob[IV_BYTES:],
                self._aad(context, wrapped.kek_version),
            )
        except InvalidTag:
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} does not unwrap with KEK {self.secret_name} version "
                f"{wrapped.kek_version}: it belongs to another scope/version, or was changed"
            ) from None
        return SecretKey(plain, label=f"dek {where}")

    # -- rotating ------------------------------------------------------------------------

    def rotate(self) -> KekInfo:
        """New KEK version: put it as AWSPENDING, verify it, then promote it to AWSCURRENT.

        The previous version keeps the AWSPREVIOUS label and stays readable by VersionId,
        so every DEK it wrapped still unwraps until re-wrapped. If a run stops after the put
        and before the promotion, the next run finds the AWSPENDING version and finishes
        with it instead of making another.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
        # Verify what the service now returns for the new version before anyone wraps with it.
        value = sm_call("secretsmanager:GetSecretValue", self.secret_name,
                        self.client.get_secret_value, SecretId=self.secret_name,
                        VersionId=pending, VersionStage=PENDING)
        key = self._parse(value)
        probe, iv = os.urandom(DEK_BYTES), os.urandom(IV_BYTES)
        aesgcm = AESGCM(key.reveal())
        if aesgcm.decrypt(iv, aesgcm.encrypt(iv, probe, b"probe"), b"probe") != probe:
            raise KeyServiceError(f"new KEK version {pending} failed its self-test; not promoted")
        self._cache(pending, key)
        sm_call("secretsmanager:UpdateSecretVersionStage", self.secret_name,
                self.client.update_secret_version_stage, SecretId=self.secret_name,
                VersionStage=CURRENT, MoveToVersionId=pending, RemoveFromVersionId=old)
        sm_call("secretsmanager:UpdateSecretVersionStage", self.secret_name,
                self.client.update_secret_version_stage, SecretId=self.secret_name,
                VersionStage=PENDING, RemoveFromVersionId=pending)
        info = self.describe()
        if info.kek_version != pending:
            raise KeyServiceError(
                f"KEK rotation of {self.secret_name}: version {pending} was promoted but "
                f"{info.kek_version} is current; another rotation ran at the same time. Run "
                "rotate_kek again once it finished"
            )
        log.info("rotated KEK %s: %s -> %s (previous kept as AWSPREVIOUS)",
                 self.secret_name, old, pending)
        return info


def secret_tags(settings: Settings, role: str) -> dict[str, str]:
    """Tags of the secrets this project creates: what they hold and for which catalog."""
    return {
        "envelope-encryption:role": role,
        "envelope-encryption:catalog": settings.catalog,
        "envelope-encryption:metastore": settings.metastore_id,
    }


def from_settings(settings: Settings, client: Any = None) -> SecretsManagerKekProvider:
    """The provider a deployment's settings describe (``client`` for tests and reuse)."""
    return SecretsManagerKekProvider(
        client if client is not None else sm_client_from_settings(settings),
        settings.option("sm-kek-secret") or default_kek_secret(settings),
        kms_key_id=settings.option("sm-kms-key-id"),
        tags=secret_tags(settings, "kek"),
    )


__all__ = [
    "SecretsManagerKekProvider",
    "clear_kek_cache",
    "default_dek_secret",
    "default_kek_secret",
    "default_legacy_secret",
    "deterministic_token",
    "from_settings",
    "sm_call",
    "translate",
]
