"""Key operations sent to the vault as REST calls, for keys the SDK would mishandle.

Given an ``oct-HSM`` key without its material (a Managed HSM never returns ``k``),
azure-keyvault-keys 4.11's ``CryptographyClient`` wraps locally with an AES key made of
*random bytes*, so the wrapped DEK could never be unwrapped again. A256KW wrap and unwrap
are therefore sent to the HSM explicitly, through ``KeyClient.send_request`` (the same
pipeline, authentication and retries as every other call).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyClient


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def send_key_operation(key_client: KeyClient, kid: str, operation: str, alg: str,
                       value: bytes) -> bytes:
    """``POST {kid}/{operation}`` (``wrapkey`` or ``unwrapkey``) with ``alg``; the result.

    Errors are raised as the SDK raises them (``HttpResponseError`` and its subclasses), for
    the provider to translate.
    """
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
    response = key_client.send_request(request)
    if response.status_code != 200:
        map_error(response.status_code, response,
                  {401: ClientAuthenticationError, 404: ResourceNotFoundError})
        raise HttpResponseError(response=response, error_format=ODataV4Format)
    return _b64url_decode(response.json()["value"])
