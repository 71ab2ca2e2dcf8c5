"""The ``azure`` back end: the KEK is an Azure Key Vault (or Managed HSM) key.

- **KEK**: an RSA key wrapping with RSA-OAEP-256 in a standard vault (the default), or an
  ``oct-HSM`` AES key wrapping with A256KW in a Managed HSM (``azure-key-type=oct-HSM``).
  Default name ``unity-catalog-<metastore_id>-<catalog>-kek`` (underscores become dashes).
- **Versions**: every wrapped DEK records the exact key version (kid) that wrapped it
  (``kek_id`` is the versionless key id, ``kek_version`` the version), and unwrap always uses
  that version, so DEKs keep working after the KEK is rotated. Unwrap refuses a kid on any
  host but the configured vault: a tampered keyring row must not send our token elsewhere.
- **Context binding**: Key Vault's wrap takes no associated data, so the stored blob carries
  a 32-byte tag ``HMAC-SHA256(DEK, label || scope/version)``. After unwrapping, the tag is
  recomputed; a DEK copied to another scope or version, or unwrapped to a wrong value, is
  refused. The tag is a PRF output under a 256-bit secret key and reveals nothing about it.
- **The keyring's integrity key** (docs/keyring-integrity.md): under an RSA key it is sealed
  with a key derived from the vault's signature (:mod:`.integrity_wrap`), because anyone can
  RSA-wrap; the key therefore needs the ``sign`` operation, which ``ensure`` adds.
- **Calls**: RSA wraps happen locally with the public key (the SDK fetches it once per
  version); unwraps go to the vault. One ``CryptographyClient`` per kid, one HTTP session
  for all clients. Throttling (429) is retried honouring ``Retry-After``.
- **oct-HSM keys never go through** ``CryptographyClient`` (it would wrap with a random
  local key): A256KW wrap and unwrap are sent to the HSM explicitly (:mod:`.key_operations`).

Blob layout (format 1)::

    0x01 | alg (0x01 RSA-OAEP-256, 0x02 A256KW) | Key Vault wrapped key | tag (32 bytes)

The original notebooks' helpers (raw RSA-OAEP-256 blobs, no context tag) are in
:mod:`.notebook_helpers`; credentials in :mod:`.credentials`; error translation in
:mod:`.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...config import Settings
from ...errors import (
    ConfigError,
    EnvelopeError,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyUnwrapFailed,
)
from ..base import DEK_BYTES, INTEGRITY_PURPOSE, KekInfo, KekProvider, WrapContext, WrappedDek
from .credentials import ca_bundle, client_kwargs, credential_from_settings
from .errors import translate_azure_error
from .integrity_wrap import ALG_SIGN_DERIVED, open_integrity_key, seal_integrity_key
from .key_operations import send_key_operation
from .names import KEY_NAME, default_key_name, key_type_of, kid_origin, short_kid

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.keys import KeyClient, KeyVaultKey
    from azure.keyvault.keys.crypto import CryptographyClient

log = logging.getLogger(__name__)

RSA = "RSA"
OCT_HSM = "oct-HSM"
KEY_TYPES = (RSA, OCT_HSM)
RSA_KEY_SIZES = (2048, 3072, 4096)
FORMAT = 0x01
ALG_RSA_OAEP_256 = 0x01
ALG_A256KW = 0x02
_ALG_NAMES = {ALG_RSA_OAEP_256: "RSA-OAEP-256", ALG_A256KW: "A256KW"}
TAG_BYTES = 32
_TAG_LABEL = b"envelope-encryption/azure-key-vault/dek-binding/v1\x00"


# -- the provider -----------------------------------------------------------------------------

class AzureKeyVaultKekProvider(KekProvider):
    """A KEK in Azure Key Vault or Managed HSM, used through ``azure-keyvault-keys``."""

    backend = "azure"

    def __init__(
        self,
        vault_url: str,
        key_name: str,
        credential: TokenCredential,
        *,
        key_type: str = RSA,
        key_size: int = 3072,
        connection_verify: str | bool | None = None,
        retry_total: int = 8,
        retry_backoff_factor: float = 0.8,
    ) -> None:
        parts = urlsplit(vault_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"azure-vault-url must be https://<vault>.vault.azure.net/ (or a Managed HSM "
                f"URL), not {vault_url!r}"
            )
        if not KEY_NAME.match(key_name):
            raise ConfigError(
                f"Key Vault key name {key_name!r} is invalid: 1-127 letters, digits and dashes"
            )
        if key_type not in KEY_TYPES:
            raise ConfigError(f"azure-key-type must be RSA or oct-HSM, not {key_type!r}")
        if key_type == RSA and key_size not in RSA_KEY_SIZES:
            raise ConfigError(f"azure-key-size must be 2048, 3072 or 4096, not {key_size}")
        self.vault_url = f"{parts.scheme}://{parts.netloc}/"
        self.key_name = key_name
        self.key_type = key_type
        self.key_size = key_size
        self.credential = credential
        self.managed_hsm = key_type == OCT_HSM or ".managedhsm." in (parts.hostname or "")
        self._kwargs = client_kwargs(vault_url, connection_verify, retry_total,
                                      retry_backoff_factor)
        self._lock = threading.Lock()
        self._key_client: KeyClient | None = None
        self._crypto: dict[str, CryptographyClient] = {}
        self._transport: Any = None

    # -- clients -------------------------------------------------------------------------

    def _shared_kwargs(self) -> dict[str, Any]:
        """Client kwargs plus one transport shared by every client (one connection pool)."""
        if self._transport is None:
            import requests
            from azure.core.pipeline.transport import RequestsTransport

            verify = self._kwargs.get("connection_verify", True)
            self._transport = RequestsTransport(
                session=requests.Session(), session_owner=False, connection_verify=verify
            )
        return {**self._kwargs, "transport": self._transport}

    @property
    def key_client(self) -> KeyClient:
        with self._lock:
            if self._key_client is None:
                from azure.keyvault.keys import KeyClient

                self._key_client = KeyClient(self.vault_url, self.credential,
                                             **self._shared_kwargs())
            return self._key_client

    def _crypto_client(self, kid: str, key: KeyVaultKey | None = None) -> CryptographyClient:
        """The cached CryptographyClient of one key version (its public key fetched once)."""
        with self._lock:
            client = self._crypto.get(kid)
            if client is None:
                from azure.keyvault.keys.crypto import CryptographyClient

                client = CryptographyClient(key if key is not None else kid, self.credential,
                                            **self._shared_kwargs())
                self._crypto[kid] = client
            return client

    def _remote(self, kid: str, operation: str, alg: str, value: bytes) -> bytes:
        """One wrapkey/unwrapkey sent to the vault (never done locally); the result bytes."""
        return send_key_operation(self.key_client, kid, operation, alg, value)

    def _error(self, error: Exception, action: str, key: str, officer: bool) -> EnvelopeError:
        return translate_azure_error(error, action=action, key=key, vault=self.vault_url,
                                     officer=officer, managed_hsm=self.managed_hsm)

    def _sdk_errors(self) -> tuple[type[Exception], ...]:
        from azure.core.exceptions import AzureError

        return (AzureError,)

    # -- describing ----------------------------------------------------------------------

    def _info(self, key: KeyVaultKey, created: bool = False) -> KekInfo:
        kid = key.id
        return KekInfo(
            backend=self.backend,
            kek_id=kid.rsplit("/", 1)[0],
            kek_version=key.properties.version or "",
            created=created,
            details=(("kty", key_type_of(key)), ("vault", self.vault_url),
                     ("alg", self._alg_name())),
        )

    def _alg_name(self) -> str:
        return "A256KW" if self.key_type == OCT_HSM else "RSA-OAEP-256"

    def _current_key(self, action: str, officer: bool) -> KeyVaultKey:
        try:
            key = self.key_client.get_key(self.key_name)
        except self._sdk_errors() as error:
            raise self._error(error, action, f"{self.key_name} (current version)",
                              officer) from None
        self._check_key(key)
        return key

    def _check_key(self, key: KeyVaultKey) -> None:
        kty = key_type_of(key)
        expected = ("RSA", "RSA-HSM") if self.key_type == RSA else ("oct-HSM",)
        if kty not in expected:
            raise ConfigError(
                f"Key Vault key {self.key_name} is of type {kty}, but azure-key-type is "
                f"{self.key_type}: set azure-key-type to match or use another azure-key-name"
            )
        if key.properties.enabled is False:
            raise KeyDisabled(
                f"the current version {key.properties.version} of Key Vault key "
                f"{self.key_name} is disabled: enable it, or rotate the KEK"
            )
        ops = {str(getattr(op, "value", op)) for op in (key.key_operations or [])}
        missing = {"wrapKey", "unwrapKey"} - ops
        if ops and missing:
            raise ConfigError(
                f"Key Vault key {self.key_name} does not permit {', '.join(sorted(missing))}: "
                "update its permitted operations (key_ops)"
            )

    def ensure(self) -> KekInfo:
        try:
            return self._info(self._allow_sign(self._current_key("read", officer=True)))
        except KeyNotFound:
            pass
        try:
            if self.key_type == OCT_HSM:
                key = self.key_client.create_oct_key(
                    self.key_name, size=256, hardware_protected=True,
                    key_operations=["wrapKey", "unwrapKey"],
                    tags={"purpose": "envelope-encryption-kek"},
                )
            else:
                key = self.key_client.create_rsa_key(
                    self.key_name, size=self.key_size,
                    key_operations=["wrapKey", "unwrapKey", "sign"],
                    tags={"purpose": "envelope-encryption-kek"},
                )
        except self._sdk_errors() as error:
            raise self._error(error, "create", self.key_name, officer=True) from None
        log.info("created Key Vault key %s version %s", self.key_name, key.properties.version)
        return self._info(key, created=True)

    def describe(self) -> KekInfo:
        return self._info(self._current_key("read", officer=False))

    def _allow_sign(self, key: KeyVaultKey) -> KeyVaultKey:
        """Add ``sign`` to an RSA KEK's permitted operations (the keyring's integrity key
        needs it); an upgrade step for keys created by an earlier release."""
        ops = [str(getattr(op, "value", op)) for op in (key.key_operations or [])]
        if self.key_type != RSA or not ops or "sign" in ops:
            return key
        try:
            key = self.key_client.update_key_properties(
                self.key_name, key.properties.version, key_operations=[*ops, "sign"])
        except self._sdk_errors() as error:
            raise self._error(error, "permit sign on", self.key_name, officer=True) from None
        log.warning("Key Vault key %s version %s now permits sign (the keyring's integrity "
                    "key is derived from its signature)", self.key_name, key.properties.version)
        return key

    def _sign(self, kid: str, alg: str, digest: bytes) -> bytes:
        try:
            return self._remote(kid, "sign", alg, digest)
        except self._sdk_errors() as error:
            raise self._error(error, "sign with", short_kid(kid), officer=False) from None

    def versions(self) -> list[tuple[str, bool]]:
        """Every version of the KEK and whether it is enabled, oldest first."""
        try:
            items = list(self.key_client.list_properties_of_key_versions(self.key_name))
        except self._sdk_errors() as error:
            raise self._error(error, "list versions of", self.key_name, officer=True) from None
        items.sort(key=lambda p: (p.created_on is None, p.created_on))
        return [(p.version or "", bool(p.enabled)) for p in items]

    # -- wrapping ------------------------------------------------------------------------

    def _tag(self, dek: bytes, context: WrapContext) -> bytes:
        return hmac.new(dek, _TAG_LABEL + context.as_aad(), hashlib.sha256).digest()

    def _wrap_key(self, dek: bytes, context: WrapContext) -> WrappedDek:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        key = self._current_key("wrap with", officer=False)
        kid = key.id
        if context.purpose == INTEGRITY_PURPOSE and self.key_type == RSA:
            info = self._info(key)
            blob = seal_integrity_key(self._sign, kid, dek, context,
                                      bytes([FORMAT, ALG_SIGN_DERIVED]))
            return WrappedDek(blob, info.kek_id, info.kek_version)
        alg = ALG_A256KW if self.key_type == OCT_HSM else ALG_RSA_OAEP_256
        try:
            if alg == ALG_A256KW:
                encrypted = self._remote(kid, "wrapkey", "A256KW", dek)
            else:
                encrypted = self._crypto_client(kid, key).wrap_key(
                    KeyWrapAlgorithm.rsa_oaep_256, dek).encrypted_key
        except self._sdk_errors() as error:
            raise self._error(error, "wrap a DEK with", short_kid(kid), officer=False) from None
        blob = bytes([FORMAT, alg]) + encrypted + self._tag(dek, context)
        info = self._info(key)
        return WrappedDek(blob, info.kek_id, info.kek_version)

    def _kid_of(self, wrapped: WrappedDek) -> str:
        if not wrapped.kek_version:
            raise KeyUnwrapFailed(f"wrapped DEK of {wrapped.kek_id} names no key version")
        kid = f"{wrapped.kek_id.rstrip('/')}/{wrapped.kek_version}"
        parts = urlsplit(kid)
        if kid_origin(kid) != kid_origin(self.vault_url) or not parts.path.startswith("/keys/"):
            raise KeyServiceError(
                f"refusing to unwrap: the DEK record names key {kid}, which is not a key of the "
                f"configured vault {self.vault_url}. If the vault moved, set azure-vault-url to "
                "the vault that holds this key"
            )
        if parts.path.split("/")[2:3] != [self.key_name]:
            raise KeyServiceError(
                f"refusing to unwrap: the DEK record names key {kid}, not a version of the "
                f"configured key {self.key_name} (azure-key-name)"
            )
        return kid

    def _unwrap_key(self, wrapped: WrappedDek, context: WrapContext) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        where = context.describe()
        blob = wrapped.blob
        if context.purpose == INTEGRITY_PURPOSE and self.key_type == RSA:
            # Never an RSA-wrapped integrity key: anyone with the public key can make one.
            if blob[:2] != bytes([FORMAT, ALG_SIGN_DERIVED]):
                raise KeyUnwrapFailed(f"the wrapped {where} is not sealed by a vault signature")
            return open_integrity_key(self._sign, self._kid_of(wrapped), blob[2:], context)
        if len(blob) < 2 + 16 + TAG_BYTES or blob[0] != FORMAT or blob[1] not in _ALG_NAMES:
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} is not a Key Vault wrapped DEK of format {FORMAT} "
                "(truncated or from another back end)"
            )
        kid = self._kid_of(wrapped)
        try:
            if blob[1] == ALG_A256KW:
                material = self._remote(kid, "unwrapkey", "A256KW", blob[2:-TAG_BYTES])
            else:
                material = self._crypto_client(kid).unwrap_key(
                    KeyWrapAlgorithm.rsa_oaep_256, blob[2:-TAG_BYTES]).key
        except self._sdk_errors() as error:
            raise self._error(error, f"unwrap DEK {where} with", short_kid(kid),
                              officer=False) from None
        if len(material) != DEK_BYTES or not hmac.compare_digest(
            self._tag(material, context), blob[-TAG_BYTES:]
        ):
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} does not belong to this scope and version (or was "
                f"tampered with): its binding tag does not match after unwrapping with "
                f"{short_kid(kid)}"
            )
        return material

    # -- rotation ------------------------------------------------------------------------

    def rotate(self) -> KekInfo:
        """A new version of the key (Key Vault's rotate); old versions stay for unwrapping."""
        try:
            key = self.key_client.rotate_key(self.key_name)
        except self._sdk_errors() as error:
            raise self._error(error, "rotate", self.key_name, officer=True) from None
        log.info("rotated Key Vault key %s to version %s", self.key_name, key.properties.version)
        return self._info(key)

    def close(self) -> None:
        """Close every SDK client and the shared HTTP session (idempotent; a later call
        opens new ones)."""
        with self._lock:
            for client in self._crypto.values():
                client.close()
            self._crypto.clear()
            if self._key_client is not None:
                self._key_client.close()
                self._key_client = None
            if self._transport is not None:
                self._transport.session.close()
                self._transport = None


def from_settings(settings: Settings,
                  credential: TokenCredential | None = None) -> AzureKeyVaultKekProvider:
    """The provider a deployment describes (the credential from settings unless given)."""
    vault_url = settings.require("azure-vault-url")
    key_name = settings.option("azure-key-name") or default_key_name(
        settings.metastore_id, settings.catalog)
    size_text = settings.option("azure-key-size")
    try:
        key_size = int(size_text)
    except ValueError:
        raise ConfigError(f"azure-key-size must be a number of bits, not {size_text!r}") \
            from None
    bundle = settings.option("azure-ca-bundle")
    return AzureKeyVaultKekProvider(
        vault_url,
        key_name,
        credential if credential is not None else credential_from_settings(settings),
        key_type=settings.option("azure-key-type") or RSA,
        key_size=key_size,
        connection_verify=ca_bundle(bundle) if bundle else None,
    )
