"""The ``aws-kms`` back end: the KEK is a symmetric AWS KMS key.

- **The key.** By default ``kek_setup`` creates a customer managed symmetric key and the alias
  ``alias/unity_catalog/<metastore_id>/<catalog>/cmk`` (``--kms-key-alias`` changes it). An
  existing alias is reused, never a second key; when two setups race, the loser schedules
  its own, never-used key for deletion and uses the winner's. ``--kms-key-id`` names an
  existing key (id, ARN, alias or alias ARN) that is used as is and never created.
- **DEKs come from GenerateDataKey (AES_256)**, not from a local RNG plus ``Encrypt``: the
  key is drawn by KMS's validated HSM generator and returned with its wrapped form in one
  call, and the setup role needs ``kms:GenerateDataKey`` but never ``kms:Encrypt``, so nobody
  holding that role can wrap a key of their own choosing and slip it into the keyring.
  :meth:`KmsKekProvider.wrap` (``Encrypt``) exists for importing existing DEKs only.
- **Encryption context.** Every wrap binds ``metastore/catalog`` (as the original notebooks
  did, so key policies can condition on it), the DEK's scope and its version. KMS refuses
  to decrypt without the same context, so a wrapped DEK copied to another scope or version
  does not unwrap; and CloudTrail records the context of every Decrypt, which tells an
  auditor which DEK was unwrapped, by whom, when.
- **Pinned keys.** A wrapped DEK records the ARN of the key that wrapped it; ``Decrypt``
  passes it as ``KeyId``, so DEKs keep working after the alias moves. Once a keyring pinned
  its recorded ARNs (:mod:`.kms_pinning`), any other key is refused, before any call.
- **Rotation** (``--kms-rotation``): ``new-key`` (default) creates a new KMS key, moves the
  alias to it, and the keyring re-wraps every DEK with ``ReEncrypt``, inside KMS, so the
  plaintext DEK never reaches this process; the old key stays enabled, because until every
  DEK is re-wrapped it still unwraps some of them. ``on-demand`` calls ``RotateKeyOnDemand``:
  KMS adds new key material under the same key ARN, later wraps use it, and every earlier
  wrap still decrypts (KMS keeps all material), so there is nothing to re-wrap. Automatic
  yearly rotation (``--kms-enable-rotation``, on by default) is the same mechanism on a
  schedule.

Every SDK error is translated by :mod:`.errors` into the project's errors, naming the
``kms:`` action that failed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...config import Settings, parse_bool
from ...errors import ConfigError, KeyDisabled, KeyNotFound, KeyUnwrapFailed
from ...secret import SecretKey
from ..base import KekInfo, KekProvider, WrapContext, WrappedDek, dek_key
from .errors import aws_errors, silence_botocore_body_logs
from .kms_pinning import KmsKeyPinning, default_alias, encryption_context
from .session import aws_client

log = logging.getLogger(__name__)

ROTATION_MODES = ("new-key", "on-demand")
TAG_PREFIX = "envelope-encryption:"
# ScheduleKeyDeletion's shortest window: a key we created and never used is discarded with it.
_DISCARD_WINDOW_DAYS = 7
_ALIAS = re.compile(r"^alias/[A-Za-z0-9:/_-]{1,250}$")


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class KmsKekProvider(KmsKeyPinning, KekProvider):
    """A KEK held in AWS KMS. The KMS client (credentials, region, endpoint) is passed in."""

    backend = "aws-kms"

    def __init__(
        self,
        client: Any,
        *,
        metastore_id: str,
        catalog: str,
        key_id: str = "",
        alias: str = "",
        enable_rotation: bool = True,
        rotation: str = "new-key",
        protects: str = "",
    ) -> None:
        if key_id and alias:
            raise ConfigError(
                "set either --kms-key-id (an existing key) or --kms-key-alias (the alias "
                "kek_setup manages), not both"
            )
        if rotation not in ROTATION_MODES:
            raise ConfigError(
                f"--kms-rotation must be one of {', '.join(ROTATION_MODES)}, not {rotation!r}"
            )
        self.managed = not key_id
        if key_id.startswith("arn:") and ":alias/" in key_id:
            # An existing alias given by ARN: rotation moves it by name.
            alias = "alias/" + key_id.split(":alias/", 1)[1]
        elif key_id.startswith("alias/"):
            alias = key_id
        self.alias = alias or (default_alias(metastore_id, catalog) if self.managed else "")
        if self.alias and (not _ALIAS.match(self.alias) or self.alias.startswith("alias/aws/")):
            raise ConfigError(
                f"invalid KMS alias {self.alias!r}: it must start with 'alias/' (not "
                "'alias/aws/') and use letters, digits, '/', '_', '-' or ':'"
            )
        self.key_ref = key_id or self.alias
        self.client = client
        self.metastore_id = metastore_id
        self.catalog = catalog
        self.enable_rotation = enable_rotation
        self.rotation = rotation
        self.protects = protects or f"the DEKs of catalog {catalog}"
        # Key ARNs the keyring has recorded (see pin()); empty until a keyring pins them.
        self.pinned = frozenset()
        self._on_new_kek = None
        silence_botocore_body_logs()

    # -- helpers -------------------------------------------------------------------------

    def _context(self, context: WrapContext) -> dict[str, str]:
        return encryption_context(self.metastore_id, self.catalog, context)

    def _key_metadata(self, key: str) -> dict[str, Any]:
        with aws_errors("kms:DescribeKey", key):
            return self.client.describe_key(KeyId=key)["KeyMetadata"]

    def _description(self) -> str:
        return (
            f"Envelope encryption KEK of Unity Catalog catalog {self.catalog} (metastore "
            f"{self.metastore_id}). It wraps {self.protects}; disabling or deleting it makes "
            "every column encrypted under those DEKs unreadable. Managed by the "
            "envelope-encryption bundle."
        )

    def _tags(self, **extra: str) -> list[dict[str, str]]:
        # Tag values allow letters, digits, spaces and _ . : / = + - @ only (no brackets).
        tags = {
            "purpose": "envelope encryption KEK - wraps data-encryption keys",
            "metastore-id": self.metastore_id,
            "catalog": self.catalog,
            "protects": self.protects,
            "managed-by": "envelope-encryption bundle",
        }
        if self.alias:
            tags["alias"] = self.alias
        tags.update(extra)
        return [{"TagKey": TAG_PREFIX + k, "TagValue": v[:256]} for k, v in tags.items()]

    def _create_key(self, **extra_tags: str) -> str:
        """A new symmetric key with our description and tags; its ARN."""
        with aws_errors("kms:CreateKey", f"a new key for {self.alias}"):
            metadata = self.client.create_key(
                Description=self._description(),
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=self._tags(**extra_tags),
            )["KeyMetadata"]
        log.info("created KMS key %s for %s", metadata["Arn"], self.alias)
        return metadata["Arn"]

    def _discard(self, arn: str, why: str) -> None:
        """Schedule deletion of a key this process created and never used (best effort)."""
        try:
            # The bare key id: AWS takes an ARN too, moto only the id.
            self.client.schedule_key_deletion(
                KeyId=arn.rsplit("/", 1)[-1], PendingWindowInDays=_DISCARD_WINDOW_DAYS
            )
            log.warning("scheduled deletion of unused KMS key %s (%s)", arn, why)
        except (ClientError, BotoCoreError) as error:
            code = _error_code(error) if isinstance(error, ClientError) else type(error).__name__
            log.warning(
                "could not schedule deletion of unused KMS key %s (%s; kms:ScheduleKeyDeletion "
                "failed with %s): delete it by hand", arn, why, code,
            )

    def _check_usable(self, metadata: dict[str, Any]) -> None:
        arn = metadata["Arn"]
        if metadata.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or metadata.get(
            "KeyUsage", "ENCRYPT_DECRYPT"
        ) != "ENCRYPT_DECRYPT":
            raise ConfigError(
                f"KMS key {arn} is {metadata.get('KeySpec')}/{metadata.get('KeyUsage')}: the "
                "KEK must be a symmetric ENCRYPT_DECRYPT key (SYMMETRIC_DEFAULT)"
            )
        state = metadata.get("KeyState", "Enabled")
        if state == "PendingDeletion":
            raise KeyDisabled(
                f"KMS key {arn} is pending deletion: cancel it now (aws kms "
                "cancel-key-deletion, then aws kms enable-key) or every DEK it wraps is lost"
            )
        if state != "Enabled":
            raise KeyDisabled(
                f"KMS key {arn} is {state}: enable it (aws kms enable-key) before using it "
                "as the KEK"
            )

    def _ensure_rotation(self, metadata: dict[str, Any]) -> str:
        """Turn on automatic rotation when asked; the status as text for describe()."""
        arn = metadata["Arn"]
        if metadata.get("Origin", "AWS_KMS") != "AWS_KMS":
            # KMS rotates only key material it generated itself.
            return f"not available for origin {metadata.get('Origin')}"
        with aws_errors("kms:GetKeyRotationStatus", arn):
            enabled = self.client.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"]
        if self.enable_rotation and not enabled:
            with aws_errors("kms:EnableKeyRotation", arn):
                self.client.enable_key_rotation(KeyId=arn)
            log.info("enabled automatic rotation of KMS key %s", arn)
            enabled = True
        return "automatic" if enabled else "off"

    def _info(self, metadata: dict[str, Any], *, created: bool = False,
              **details: str) -> KekInfo:
        base = [("key_state", str(metadata.get("KeyState", ""))), ("rotation_mode", self.rotation)]
        if self.alias:
            base.insert(0, ("alias", self.alias))
        base.extend(details.items())
        return KekInfo(self.backend, metadata["Arn"], "", created, tuple(base))

    # -- interface -----------------------------------------------------------------------

    def describe(self) -> KekInfo:
        """The key the alias (or --kms-key-id) points to now, by ARN."""
        return self._info(self._key_metadata(self.key_ref))

    def ensure(self) -> KekInfo:
        created = False
        try:
            metadata = self._key_metadata(self.key_ref)
        except KeyNotFound:
            if not self.managed:
                raise KeyNotFound(
                    f"KMS key {self.key_ref} (--kms-key-id) does not exist in this account and "
                    "region: kek_setup creates a key only for an alias (--kms-key-alias, or "
                    "leave both unset for the default alias)"
                ) from None
            metadata, created = self._create_managed_key()
        self._require_pinned(metadata["Arn"], f"use {self.key_ref} as the KEK")
        self._check_usable(metadata)
        rotation = self._ensure_rotation(metadata)
        return self._info(metadata, created=created, automatic_rotation=rotation)

    def _create_managed_key(self) -> tuple[dict[str, Any], bool]:
        arn = self._create_key()
        try:
            self.client.create_alias(AliasName=self.alias, TargetKeyId=arn)
        except ClientError as error:
            if _error_code(error) == "AlreadyExistsException":
                # Another kek_setup created the alias since our DescribeKey: its key wins.
                self._discard(arn, f"{self.alias} was created concurrently")
                return self._key_metadata(self.alias), False
            self._discard(arn, f"kms:CreateAlias {self.alias} failed")
            with aws_errors("kms:CreateAlias", self.alias):
                raise
        log.info("alias %s now names KMS key %s", self.alias, arn)
        return self._key_metadata(arn), True

    def generate_dek(self, context: WrapContext) -> tuple[SecretKey, WrappedDek]:
        """A new DEK from KMS GenerateDataKey (AES_256), wrapped under the current key.

        When the keyring pinned its keys, the key behind the alias is checked first: a DEK is
        never generated under a key someone else pointed the alias at.
        """
        key = self.key_ref
        if self.pinned:
            key = self._key_metadata(self.key_ref)["Arn"]
            self._require_pinned(key, f"generate DEK {context.describe()} under {self.key_ref}")
        with aws_errors("kms:GenerateDataKey", key):
            answer = self.client.generate_data_key(
                KeyId=key, KeySpec="AES_256", EncryptionContext=self._context(context)
            )
        dek = dek_key(answer.pop("Plaintext"), context)
        self._require_pinned(answer["KeyId"], f"keep DEK {context.describe()}")
        return dek, WrappedDek(answer["CiphertextBlob"], answer["KeyId"], "")

    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        """Wrap an existing DEK with ``Encrypt`` (imports only; new DEKs use generate_dek)."""
        with aws_errors("kms:Encrypt", self.key_ref):
            answer = self.client.encrypt(
                KeyId=self.key_ref,
                Plaintext=dek,
                EncryptionContext=self._context(context),
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        self._require_pinned(answer["KeyId"], f"keep DEK {context.describe()}")
        return WrappedDek(answer["CiphertextBlob"], answer["KeyId"], "")

    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        """``Decrypt`` pinned to the key that wrapped the DEK, with the DEK's context.

        A record naming a key the keyring did not record is refused before any call: a
        table writer must not choose the key (its own, in another account) we decrypt with.
        """
        key = wrapped.kek_id or self.key_ref
        if self.pinned and key not in self.pinned:
            raise KeyUnwrapFailed(
                f"refusing to unwrap {context.describe()}: its record names KMS key {key}, "
                f"which is not a key of this keyring (recorded: {', '.join(sorted(self.pinned))})"
            )
        with aws_errors("kms:Decrypt", key):
            answer = self.client.decrypt(
                CiphertextBlob=wrapped.blob,
                KeyId=key,
                EncryptionContext=self._context(context),
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        plaintext = answer.pop("Plaintext")
        if key.startswith("arn:") and ":key/" in key and answer.get("KeyId") != key:
            raise KeyUnwrapFailed(
                f"KMS decrypted DEK {context.describe()} with {answer.get('KeyId')}, not the "
                f"recorded key {key}"
            )
        return plaintext

    def rewrap(self, wrapped: WrappedDek, context: WrapContext) -> WrappedDek:
        """Re-wrap under the current key with ``ReEncrypt``: the plaintext stays in KMS."""
        return self._reencrypt(wrapped, context, self.key_ref)

    def _reencrypt(self, wrapped: WrappedDek, context: WrapContext,
                   destination: str) -> WrappedDek:
        source = wrapped.kek_id or self.key_ref
        if self.pinned and source not in self.pinned:
            raise KeyUnwrapFailed(
                f"refusing to re-wrap {context.describe()}: its record names KMS key {source}, "
                "which is not a key of this keyring"
            )
        ec = self._context(context)
        with aws_errors(
            "kms:ReEncryptFrom (on the old key) and kms:ReEncryptTo (on the new key)",
            f"{source} -> {destination}",
        ):
            answer = self.client.re_encrypt(
                CiphertextBlob=wrapped.blob,
                SourceKeyId=source,
                SourceEncryptionContext=ec,
                SourceEncryptionAlgorithm="SYMMETRIC_DEFAULT",
                DestinationKeyId=destination,
                DestinationEncryptionContext=ec,
                DestinationEncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        self._require_pinned(answer["KeyId"], f"keep re-wrapped DEK {context.describe()}")
        return WrappedDek(answer["CiphertextBlob"], answer["KeyId"], "")

    def rotate(self) -> KekInfo:
        """Rotate per ``--kms-rotation``: a new key behind the alias, or KMS on-demand rotation."""
        if self.rotation == "on-demand":
            return self.rotate_on_demand()
        return self.rotate_to_new_key()

    def rotate_on_demand(self) -> KekInfo:
        """New key material under the same key ARN (KMS RotateKeyOnDemand).

        Earlier wraps keep decrypting (KMS keeps every generation of material and picks the
        right one from the ciphertext), so the keyring has nothing to re-wrap.
        """
        metadata = self._key_metadata(self.key_ref)
        with aws_errors("kms:RotateKeyOnDemand", metadata["Arn"]):
            self.client.rotate_key_on_demand(KeyId=metadata["Arn"])
        log.info("requested on-demand rotation of KMS key %s", metadata["Arn"])
        return self._info(metadata, rotated="on-demand")

    def rotate_to_new_key(self) -> KekInfo:
        """Create a new key and move the alias to it; old wraps still pin the old key.

        New DEKs are wrapped by the new key at once. The caller re-wraps the existing DEKs
        (``Keyring.rewrap_all``); the old key must stay enabled until that has finished.
        """
        if not self.alias:
            raise ConfigError(
                f"rotation to a new KMS key moves an alias, but the KEK is given as the key "
                f"{self.key_ref} (--kms-key-id): give an alias instead, or set "
                "--kms-rotation=on-demand"
            )
        old = self._key_metadata(self.alias)
        self._require_pinned(old["Arn"], f"rotate {self.alias}")
        arn = self._create_key(**{"previous-key": old["Arn"]})
        pinned = self.pinned
        try:
            new = self._key_metadata(arn)
            if self.enable_rotation:
                self._ensure_rotation(new)
            if self._on_new_kek is not None:
                # The keyring records the new key (and the integrity key wrapped under it)
                # before the alias moves: readers accept it from the moment they can see it.
                self.pinned = pinned | {arn}
                self._on_new_kek(arn, lambda w, c: self._reencrypt(w, c, arn))
            with aws_errors("kms:UpdateAlias", f"{self.alias} (to {arn})"):
                self.client.update_alias(AliasName=self.alias, TargetKeyId=arn)
        except Exception:
            # The alias still names the old key, which keeps working; drop the orphan.
            self.pinned = pinned
            self._discard(arn, f"rotation of {self.alias} failed")
            raise
        log.info("rotated %s from KMS key %s to %s", self.alias, old["Arn"], arn)
        return self._info(self._key_metadata(arn), created=True, previous_key=old["Arn"])


def kms_client(settings: Settings, credential: Any | None = None) -> Any:
    """A KMS client for ``settings`` (see :mod:`.session`)."""
    return aws_client(settings, "kms", credential)


def from_settings(settings: Settings, credential: Any | None = None, *,
                  client: Any = None) -> KmsKekProvider:
    """The provider the settings describe. ``credential`` (a botocore session, e.g. a UDF's
    service credential) replaces the one the settings name; ``client`` (tests, reuse)
    replaces the client altogether."""
    keyring = f"{settings.catalog}.{settings.crypto_schema}.{settings.keyring_table}"
    return KmsKekProvider(
        client if client is not None else kms_client(settings, credential),
        metastore_id=settings.metastore_id,
        catalog=settings.catalog,
        key_id=settings.option("kms-key-id"),
        alias=settings.option("kms-key-alias"),
        enable_rotation=parse_bool(settings.option("kms-enable-rotation"), "kms-enable-rotation"),
        rotation=settings.option("kms-rotation"),
        protects=f"the data-encryption keys in {keyring}",
    )
