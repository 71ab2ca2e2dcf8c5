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
- **Calls**: RSA wraps happen locally with the public key (the SDK fetches it once per
  version); unwraps go to the vault. One ``CryptographyClient`` per kid, one HTTP session
  for all clients. Throttling (429) is retried honouring ``Retry-After``.
- **oct-HSM keys never go through** ``CryptographyClient``: given a symmetric key without its
  material (a Managed HSM never returns ``k``), azure-keyvault-keys 4.11 builds a local AES
  key from *random bytes* and wraps with it, so the wrapped DEK could never be unwrapped
  again. A256KW wrap and unwrap are therefore sent to the HSM explicitly
  (``KeyClient.send_request``, same pipeline, auth and retries).

Blob layout (format 1)::

    0x01 | alg (0x01 RSA-OAEP-256, 0x02 A256KW) | Key Vault wrapped key | tag (32 bytes)

The public helpers :func:`create_keyvault_key`, :func:`wrap_data_key` and
:func:`unwrap_data_key` keep the original notebooks' module interface (raw RSA-OAEP-256
blobs, no context tag) for interactive use and migrations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import (
    ConfigError,
    EnvelopeError,
    KeyAccessDenied,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyServiceThrottled,
    KeyUnwrapFailed,
)
from ..lakehouse import running_on_databricks
from ..secret import SecretKey
from .base import DEK_BYTES, KekInfo, KekProvider, WrapContext, WrappedDek

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
_KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# Entra authority hosts that instance discovery knows; any other (a private or test
# authority) must skip discovery, which would otherwise call login.microsoftonline.com.
_KNOWN_AUTHORITIES = {
    "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
    "login.microsoftonline.de",
}
_MAX_SERVICE_MESSAGE = 300


# -- roles named in error messages -----------------------------------------------------------

def _officer_role(managed_hsm: bool) -> str:
    if managed_hsm:
        return ("the Managed HSM local role 'Managed HSM Crypto User' on the key (data actions "
                "keys/read, keys/create, keys/rotate)")
    return ("the 'Key Vault Crypto Officer' role on the vault or key (data actions "
            "Microsoft.KeyVault/vaults/keys/read, keys/create/action, keys/rotate/action; with "
            "access policies: key permissions get, create, rotate)")


def _user_role(managed_hsm: bool) -> str:
    if managed_hsm:
        return ("the Managed HSM local role 'Managed HSM Crypto Service Encryption User' or "
                "'Managed HSM Crypto User' on the key (keys/read, keys/wrap, keys/unwrap)")
    return ("the 'Key Vault Crypto User' role (or the narrower 'Key Vault Crypto Service "
            "Encryption User') on the vault or key (data actions "
            "Microsoft.KeyVault/vaults/keys/read, keys/wrap/action, keys/unwrap/action; with "
            "access policies: key permissions get, wrapKey, unwrapKey)")


def _service_message(error: Exception) -> str:
    """Key Vault's own message (names the key and operation, never key material), trimmed."""
    message = getattr(error, "message", None) or str(error)
    first = str(message).strip().splitlines()[0] if str(message).strip() else type(error).__name__
    return first[:_MAX_SERVICE_MESSAGE]


def _inner_code(error: Any) -> str:
    odata = getattr(error, "error", None)
    inner = getattr(odata, "innererror", None) or {}
    code = inner.get("code", "") if isinstance(inner, dict) else ""
    return str(code or getattr(odata, "code", "") or "")


def translate_azure_error(error: Exception, *, action: str, key: str, vault: str,
                          officer: bool, managed_hsm: bool = False) -> EnvelopeError:
    """The project's error for an Azure SDK error raised while doing ``action`` on ``key``.

    ``officer`` says whether the action needs the management role (setup, rotation) or the
    crypto-user role (wrap, unwrap); the message names that role.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    role = _officer_role(managed_hsm) if officer else _user_role(managed_hsm)
    detail = _service_message(error)
    if isinstance(error, ClientAuthenticationError):
        return KeyAccessDenied(
            f"could not authenticate to Key Vault {vault} to {action} key {key}: {detail}. "
            "Check the credential: the Unity Catalog service credential on Databricks, or "
            "azure-tenant-id/azure-client-id/azure-client-secret-env, or the environment of "
            f"DefaultAzureCredential; the identity needs {role}"
        )
    if isinstance(error, ResourceNotFoundError):
        return KeyNotFound(
            f"Key Vault key {key} was not found in {vault} (while trying to {action}): "
            f"{detail}. Run the kek_setup job, check azure-key-name and azure-vault-url, or "
            "recover the key if it was deleted"
        )
    if isinstance(error, ResourceExistsError):
        return KeyServiceError(
            f"cannot {action} key {key} in {vault}: {detail}. A deleted key with this name is "
            "still recoverable: recover it ('az keyvault key recover') or purge it, or set "
            "azure-key-name to another name"
        )
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return KeyServiceError(
            f"cannot reach Key Vault {vault} to {action} key {key}: {detail}. Check the vault "
            "URL, DNS and network path from the cluster (vault firewall, private endpoint, "
            "NCC for serverless) and, for a private CA, azure-ca-bundle"
        )
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = _inner_code(error)
        if status == 403 and (code in ("KeyDisabled", "KeyExpired") or "disabled" in detail):
            return KeyDisabled(
                f"Key Vault key {key} is disabled or expired, so it cannot {action}: {detail} "
                "Enable that key version again (or, if it was rotated out on purpose, run the "
                "rotate_kek job so every DEK is wrapped by the current version)"
            )
        if status == 403 and code == "ForbiddenByFirewall":
            return KeyAccessDenied(
                f"the firewall of Key Vault {vault} refused the request to {action} key {key}: "
                f"{detail}. Allow the workspace's subnets or use a private endpoint"
            )
        if status in (401, 403):
            return KeyAccessDenied(
                f"access denied to {action} key {key} in {vault}: {detail}. The caller needs "
                f"{role}"
            )
        if status == 429:
            return KeyServiceThrottled(
                f"Key Vault {vault} kept throttling requests to {action} key {key} after "
                f"retries: {detail}. Spread the jobs out or raise the vault's limits"
            )
        if status == 400 and action.startswith("unwrap"):
            return KeyUnwrapFailed(
                f"Key Vault refused to unwrap with key {key}: {detail}. The wrapped DEK was "
                "not made by this key version, or it was tampered with"
            )
        return KeyServiceError(
            f"Key Vault {vault} failed to {action} key {key}: HTTP {status} {code}: {detail}"
        )
    return KeyServiceError(f"Key Vault {vault} failed to {action} key {key}: {detail}")


# -- credentials ------------------------------------------------------------------------------

def credential_from_settings(settings: Settings) -> TokenCredential:
    """The credential a deployment names, in order of preference.

    1. On Databricks with ``service_credential`` set: the Unity Catalog service credential,
       through ``dbutils.credentials.getServiceCredentialsProvider``.
    2. ``azure-tenant-id`` + ``azure-client-id`` + ``azure-client-secret-env`` (the *name* of
       an environment variable holding the secret): a ``ClientSecretCredential``.
    3. Otherwise ``DefaultAzureCredential`` (environment, workload or managed identity, CLI).

    ``azure-authority-host`` points options 2 and 3 at another Entra authority (sovereign
    clouds); ``azure-ca-bundle`` verifies the authority's TLS certificate too.
    """
    if settings.service_credential:
        if running_on_databricks():
            from databricks.sdk.runtime import dbutils

            return dbutils.credentials.getServiceCredentialsProvider(settings.service_credential)
        log.info("not on Databricks: service credential %s is not used; falling back to "
                 "client-secret or default Azure credentials", settings.service_credential)
    tenant = settings.option("azure-tenant-id")
    client = settings.option("azure-client-id")
    secret_env = settings.option("azure-client-secret-env")
    authority = settings.option("azure-authority-host")
    kwargs: dict[str, Any] = {}
    if authority:
        if urlsplit(authority).scheme != "https":
            raise ConfigError(f"azure-authority-host must be an https URL, not {authority!r}")
        kwargs["authority"] = authority
        if urlsplit(authority).hostname not in _KNOWN_AUTHORITIES:
            kwargs["disable_instance_discovery"] = True
    if settings.option("azure-ca-bundle"):
        kwargs["connection_verify"] = _ca_bundle(settings.option("azure-ca-bundle"))
    if tenant or client or secret_env:
        missing = [name for name, value in (("azure-tenant-id", tenant),
                                            ("azure-client-id", client),
                                            ("azure-client-secret-env", secret_env)) if not value]
        if missing:
            raise ConfigError(
                "a client-secret credential needs azure-tenant-id, azure-client-id and "
                f"azure-client-secret-env; missing: {', '.join(missing)}"
            )
        secret = os.environ.get(secret_env, "")
        if not secret:
            raise ConfigError(
                f"azure-client-secret-env names the environment variable {secret_env}, which "
                "is not set in this process"
            )
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(tenant, client, secret, **kwargs)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**kwargs)


def _ca_bundle(path: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"azure-ca-bundle {path!r} is not a file")
    return path


def default_key_name(metastore_id: str, catalog: str) -> str:
    """``unity-catalog-<metastore_id>-<catalog>-kek`` with underscores as dashes."""
    return f"unity-catalog-{metastore_id}-{catalog}-kek".replace("_", "-")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _client_kwargs(vault_url: str, connection_verify: str | bool | None,
                   retry_total: int, retry_backoff_factor: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # azure-core's RetryPolicy retries 408/429/5xx and sleeps for Retry-After when the
        # service sends it (Key Vault does on 429), else backs off exponentially.
        "retry_total": retry_total,
        "retry_backoff_factor": retry_backoff_factor,
        "retry_backoff_max": 60,
        # Body logging would write unwrap responses (plaintext DEKs) to the log: never on.
        "logging_enable": False,
    }
    if connection_verify is not None:
        kwargs["connection_verify"] = connection_verify
    # The SDK checks that the vault's host ends with the challenge's resource domain
    # (vault.azure.net). Only a loopback vault (the project's tests) may skip that check.
    if urlsplit(vault_url).hostname in _LOOPBACK:
        kwargs["verify_challenge_resource"] = False
    return kwargs


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
        if not _KEY_NAME.match(key_name):
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
        self._kwargs = _client_kwargs(vault_url, connection_verify, retry_total,
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
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ODataV4Format,
            ResourceNotFoundError,
            map_error,
        )
        from azure.core.rest import HttpRequest

        request = HttpRequest(
            "POST", f"{urlsplit(kid).path}/{operation}",
            json={"alg": alg, "value": _b64url(value)},
        )
        response = self.key_client.send_request(request)
        if response.status_code != 200:
            map_error(response.status_code, response,
                      {401: ClientAuthenticationError, 404: ResourceNotFoundError})
            raise HttpResponseError(response=response, error_format=ODataV4Format)
        return _b64url_decode(response.json()["value"])

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
            details=(("kty", _kty(key)), ("vault", self.vault_url),
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
        kty = _kty(key)
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
            return self._info(self._current_key("read", officer=True))
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
                    key_operations=["wrapKey", "unwrapKey"],
                    tags={"purpose": "envelope-encryption-kek"},
                )
        except self._sdk_errors() as error:
            raise self._error(error, "create", self.key_name, officer=True) from None
        log.info("created Key Vault key %s version %s", self.key_name, key.properties.version)
        return self._info(key, created=True)

    def describe(self) -> KekInfo:
        return self._info(self._current_key("read", officer=False))

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

    def wrap(self, dek: SecretKey, context: WrapContext) -> WrappedDek:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        key = self._current_key("wrap with", officer=False)
        kid = key.id
        if self.key_type == OCT_HSM:
            alg, algorithm = ALG_A256KW, KeyWrapAlgorithm.aes_256
        else:
            alg, algorithm = ALG_RSA_OAEP_256, KeyWrapAlgorithm.rsa_oaep_256
        try:
            if alg == ALG_A256KW:
                encrypted = self._remote(kid, "wrapkey", "A256KW", dek.reveal())
            else:
                encrypted = self._crypto_client(kid, key).wrap_key(
                    algorithm, dek.reveal()).encrypted_key
        except self._sdk_errors() as error:
            raise self._error(error, "wrap a DEK with", _short(kid), officer=False) from None
        blob = bytes([FORMAT, alg]) + encrypted + self._tag(dek.reveal(), context)
        info = self._info(key)
        return WrappedDek(blob, info.kek_id, info.kek_version)

    def _kid_of(self, wrapped: WrappedDek) -> str:
        if not wrapped.kek_version:
            raise KeyUnwrapFailed(f"wrapped DEK of {wrapped.kek_id} names no key version")
        kid = f"{wrapped.kek_id.rstrip('/')}/{wrapped.kek_version}"
        parts = urlsplit(kid)
        if _origin(kid) != _origin(self.vault_url) or not parts.path.startswith("/keys/"):
            raise KeyServiceError(
                f"refusing to unwrap: the DEK record names key {kid}, which is not a key of the "
                f"configured vault {self.vault_url}. If the vault moved, set azure-vault-url to "
                "the vault that holds this key"
            )
        return kid

    def unwrap(self, wrapped: WrappedDek, context: WrapContext) -> SecretKey:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        where = f"{context.scope} v{context.version}"
        blob = wrapped.blob
        if len(blob) < 2 + 16 + TAG_BYTES or blob[0] != FORMAT or blob[1] not in _ALG_NAMES:
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} is not a Key Vault wrapped DEK of format {FORMAT} "
                "(truncated or from another back end)"
            )
        kid = self._kid_of(wrapped)
        algorithm = (KeyWrapAlgorithm.aes_256 if blob[1] == ALG_A256KW
                     else KeyWrapAlgorithm.rsa_oaep_256)
        try:
            if blob[1] == ALG_A256KW:
                material = self._remote(kid, "unwrapkey", "A256KW", blob[2:-TAG_BYTES])
            else:
                material = self._crypto_client(kid).unwrap_key(
                    algorithm, blob[2:-TAG_BYTES]).key
        except self._sdk_errors() as error:
            raise self._error(error, f"unwrap DEK {where} with", _short(kid),
                              officer=False) from None
        if len(material) != DEK_BYTES or not hmac.compare_digest(
            self._tag(material, context), blob[-TAG_BYTES:]
        ):
            raise KeyUnwrapFailed(
                f"wrapped DEK {where} does not belong to this scope and version (or was "
                f"tampered with): its binding tag does not match after unwrapping with "
                f"{_short(kid)}"
            )
        return SecretKey(material, label=f"dek {where}")

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


def _kty(key: KeyVaultKey) -> str:
    return str(getattr(key.key_type, "value", key.key_type))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _short(kid: str) -> str:
    """``<name>/<version>`` of a kid, for messages."""
    parts = urlsplit(kid).path.strip("/").split("/")
    return "/".join(parts[1:]) if len(parts) >= 2 else kid


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
    ca_bundle = settings.option("azure-ca-bundle")
    return AzureKeyVaultKekProvider(
        vault_url,
        key_name,
        credential if credential is not None else credential_from_settings(settings),
        key_type=settings.option("azure-key-type") or RSA,
        key_size=key_size,
        connection_verify=_ca_bundle(ca_bundle) if ca_bundle else None,
    )


# -- the original module's helpers -------------------------------------------------------------

def _helper_kwargs(vault_url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    verify = kwargs.pop("connection_verify", None)
    out = _client_kwargs(vault_url, verify, kwargs.pop("retry_total", 8), 0.8)
    out.update(kwargs)
    return out


def create_keyvault_key(vault_url: str, key_name: str, credential: TokenCredential,
                        **kwargs: Any) -> KeyVaultKey:
    """Create (or fetch, when it exists) an RSA key for wrapping DEKs; returns the key.

    ``kwargs`` go to the SDK client (e.g. ``connection_verify``); ``size`` sets the RSA size.
    """
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.keyvault.keys import KeyClient

    size = kwargs.pop("size", 3072)
    client = KeyClient(vault_url, credential, **_helper_kwargs(vault_url, kwargs))
    try:
        try:
            return client.get_key(key_name)
        except ResourceNotFoundError:
            return client.create_rsa_key(key_name, size=size,
                                         key_operations=["wrapKey", "unwrapKey"])
    except AzureError as error:
        raise translate_azure_error(error, action="create", key=key_name, vault=vault_url,
                                    officer=True) from None
    finally:
        client.close()


def _helper_crypto(vault_url: str, key_name: str, credential: TokenCredential,
                   version: str | None, kwargs: dict[str, Any]) -> CryptographyClient:
    from azure.keyvault.keys.crypto import CryptographyClient

    kid = f"{vault_url.rstrip('/')}/keys/{key_name}" + (f"/{version}" if version else "")
    return CryptographyClient(kid, credential, **_helper_kwargs(vault_url, kwargs))


def wrap_data_key(vault_url: str, key_name: str, dek: bytes | SecretKey,
                  credential: TokenCredential, **kwargs: Any) -> bytes:
    """Wrap a DEK with RSA-OAEP-256 under the key's current version; the raw wrapped bytes.

    ``version=`` picks a key version; other ``kwargs`` go to the SDK client.
    """
    from azure.core.exceptions import AzureError
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    material = dek.reveal() if isinstance(dek, SecretKey) else bytes(dek)
    client = _helper_crypto(vault_url, key_name, credential, kwargs.pop("version", None), kwargs)
    try:
        return client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, material).encrypted_key
    except AzureError as error:
        raise translate_azure_error(error, action="wrap with", key=key_name, vault=vault_url,
                                    officer=False) from None
    finally:
        client.close()


def unwrap_data_key(vault_url: str, key_name: str, wrapped_dek: bytes,
                    credential: TokenCredential, **kwargs: Any) -> SecretKey:
    """Unwrap raw RSA-OAEP-256 bytes made by :func:`wrap_data_key`.

    Without ``version=`` the key's current version is used (as the original module did);
    pass the version that wrapped the DEK once the key has been rotated.
    """
    from azure.core.exceptions import AzureError
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    client = _helper_crypto(vault_url, key_name, credential, kwargs.pop("version", None), kwargs)
    try:
        result = client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, bytes(wrapped_dek))
    except AzureError as error:
        raise translate_azure_error(error, action="unwrap with", key=key_name, vault=vault_url,
                                    officer=False) from None
    finally:
        client.close()
    return SecretKey(result.key, label=f"dek unwrapped by {key_name}")
