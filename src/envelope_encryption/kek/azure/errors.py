"""Translation of Azure SDK errors into the project's errors, naming the role to grant.

Key Vault's own message names the key and the operation, never key material; it is kept
(trimmed) in the project's message, with the RBAC role or access policy the caller needs.
"""

from __future__ import annotations

from typing import Any

from ... import errors

_MAX_SERVICE_MESSAGE = 300


def officer_role(managed_hsm: bool) -> str:
    if managed_hsm:
        return ("the Managed HSM local role 'Managed HSM Crypto User' on the key (data actions "
                "keys/read, keys/create, keys/rotate)")
    return ("the 'Key Vault Crypto Officer' role on the vault or key (data actions "
            "Microsoft.KeyVault/vaults/keys/read, keys/create/action, keys/rotate/action; with "
            "access policies: key permissions get, create, rotate)")


def user_role(managed_hsm: bool) -> str:
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
                          officer: bool, managed_hsm: bool = False) -> errors.EnvelopeError:
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

    role = officer_role(managed_hsm) if officer else user_role(managed_hsm)
    detail = _service_message(error)
    if isinstance(error, ClientAuthenticationError):
        return errors.KeyAccessDenied(
            f"could not authenticate to Key Vault {vault} to {action} key {key}: {detail}. "
            "Check the credential: the Unity Catalog service credential on Databricks, or "
            "azure-tenant-id/azure-client-id/azure-client-secret-env, or the environment of "
            f"DefaultAzureCredential; the identity needs {role}"
        )
    if isinstance(error, ResourceNotFoundError):
        return errors.KeyNotFound(
            f"Key Vault key {key} was not found in {vault} (while trying to {action}): "
            f"{detail}. Run the kek_setup job, check azure-key-name and azure-vault-url, or "
            "recover the key if it was deleted"
        )
    if isinstance(error, ResourceExistsError):
        return errors.KeyServiceError(
            f"cannot {action} key {key} in {vault}: {detail}. A deleted key with this name is "
            "still recoverable: recover it ('az keyvault key recover') or purge it, or set "
            "azure-key-name to another name"
        )
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return errors.KeyServiceError(
            f"cannot reach Key Vault {vault} to {action} key {key}: {detail}. Check the vault "
            "URL, DNS and network path from the cluster (vault firewall, private endpoint, "
            "NCC for serverless) and, for a private CA, azure-ca-bundle"
        )
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = _inner_code(error)
        if status == 403 and (code in ("KeyDisabled", "KeyExpired") or "disabled" in detail):
            return errors.KeyDisabled(
                f"Key Vault key {key} is disabled or expired, so it cannot {action}: {detail} "
                "Enable that key version again (or, if it was rotated out on purpose, run the "
                "rotate_kek job so every DEK is wrapped by the current version)"
            )
        if status == 403 and code == "ForbiddenByFirewall":
            return errors.KeyAccessDenied(
                f"the firewall of Key Vault {vault} refused the request to {action} key {key}: "
                f"{detail}. Allow the workspace's subnets or use a private endpoint"
            )
        if status in (401, 403):
            return errors.KeyAccessDenied(
                f"access denied to {action} key {key} in {vault}: {detail}. The caller needs "
                f"{role}"
            )
        if status == 429:
            return errors.KeyServiceThrottled(
                f"Key Vault {vault} kept throttling requests to {action} key {key} after "
                f"retries: {detail}. Spread the jobs out or raise the vault's limits"
            )
        if status == 400 and action.startswith("unwrap"):
            return errors.KeyUnwrapFailed(
                f"Key Vault refused to unwrap with key {key}: {detail}. The wrapped DEK was "
                "not made by this key version, or it was tampered with"
            )
        return errors.KeyServiceError(
            f"Key Vault {vault} failed to {action} key {key}: HTTP {status} {code}: {detail}"
        )
    return errors.KeyServiceError(f"Key Vault {vault} failed to {action} key {key}: {detail}")
