"""The original notebooks' Key Vault helpers, kept for interactive use and migrations.

:func:`create_keyvault_key`, :func:`wrap_data_key` and :func:`unwrap_data_key` keep the
original module's interface: raw RSA-OAEP-256 blobs, no context binding tag (the provider,
:mod:`.provider`, adds one). Each call opens and closes its own SDK client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...secret import SecretKey
from .credentials import client_kwargs
from .errors import translate_azure_error

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.keys import KeyVaultKey
    from azure.keyvault.keys.crypto import CryptographyClient


def _helper_kwargs(vault_url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    verify = kwargs.pop("connection_verify", None)
    out = client_kwargs(vault_url, verify, kwargs.pop("retry_total", 8), 0.8)
    out.update(kwargs)
    return out


@contextmanager
def _one_call(client: Any, action: str, key_name: str, vault_url: str,
              officer: bool) -> Iterator[None]:
    """Run one SDK call on ``client``: its errors become the project's, then it is closed."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as error:
        raise translate_azure_error(error, action=action, key=key_name, vault=vault_url,
                                    officer=officer) from None
    finally:
        client.close()


def create_keyvault_key(vault_url: str, key_name: str, credential: TokenCredential,
                        **kwargs: Any) -> KeyVaultKey:
    """Create (or fetch, when it exists) an RSA key for wrapping DEKs; returns the key.

    ``kwargs`` go to the SDK client (e.g. ``connection_verify``); ``size`` sets the RSA size.
    """
    from azure.core.exceptions import ResourceNotFoundError
    from azure.keyvault.keys import KeyClient

    size = kwargs.pop("size", 3072)
    client = KeyClient(vault_url, credential, **_helper_kwargs(vault_url, kwargs))
    with _one_call(client, "create", key_name, vault_url, officer=True):
        try:
            return client.get_key(key_name)
        except ResourceNotFoundError:
            return client.create_rsa_key(key_name, size=size,
                                         key_operations=["wrapKey", "unwrapKey"])


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
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    client = _helper_crypto(vault_url, key_name, credential, kwargs.pop("version", None), kwargs)
    with _one_call(client, "wrap with", key_name, vault_url, officer=False):
        material = dek.reveal() if isinstance(dek, SecretKey) else bytes(dek)
        return client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, material).encrypted_key


def unwrap_data_key(vault_url: str, key_name: str, wrapped_dek: bytes,
                    credential: TokenCredential, **kwargs: Any) -> SecretKey:
    """Unwrap raw RSA-OAEP-256 bytes made by :func:`wrap_data_key`.

    Without ``version=`` the key's current version is used (as the original module did);
    pass the version that wrapped the DEK once the key has been rotated.
    """
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    client = _helper_crypto(vault_url, key_name, credential, kwargs.pop("version", None), kwargs)
    with _one_call(client, "unwrap with", key_name, vault_url, officer=False):
        result = client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, bytes(wrapped_dek))
    return SecretKey(result.key, label=f"dek unwrapped by {key_name}")
