"""What the aws-sm KEK provider and the aws-sm DEK store share: names, tokens, calls.

The KEK (:mod:`.secrets_manager`) and the wrapped DEKs
(:mod:`envelope_encryption.keyring.secrets_manager_store`) live in two Secrets Manager
secrets of one deployment. Both import their secret names, idempotency tokens, staging
labels, tags, client and error handling from here, so neither imports the other.

Every call goes through :func:`sm_call`, which turns SDK errors into the project's errors
(naming the ``secretsmanager:`` action). Moto note: ``get_secret_value`` is always called
with a ``VersionId`` or ``VersionStage="AWSCURRENT"`` (moto returns a stale version without
one after a stage move).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...config import Settings
from ...errors import ConfigError, EnvelopeError, KeyDisabled, KeyNotFound
from .errors import silence_botocore_body_logs, translate_aws_error, translate_botocore_error
from .session import aws_client

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
PENDING = "AWSPENDING"
# Namespace of the deterministic ClientRequestTokens (idempotent creates).
TOKEN_NAMESPACE = uuid.UUID("5b0b7f3e-2f0e-4d57-9a55-1c1a2f6e4e11")


class ProjectSecret:
    """One secret this project writes (the KEK's or the DEK store's): client, name, the KMS
    key that encrypts it at rest (empty: AWS's default) and the tags it is created with."""

    name_setting = "--sm-kek-secret / --sm-dek-secret"  # the setting naming the secret

    def __init__(self, client: Any, secret_name: str, *, kms_key_id: str = "",
                 tags: dict[str, str] | None = None) -> None:
        if not secret_name:
            raise ConfigError(f"the aws-sm back end needs a secret name ({self.name_setting})")
        silence_botocore_body_logs()
        self.client = client
        self.secret_name = secret_name
        self.kms_key_id = kms_key_id
        self.tags = dict(tags or {})
        self.description = f"AWS Secrets Manager secret {secret_name}"


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


def ensure_secret(client: Any, name: str, *, what: str, value: str, token: str,
                  description: str, kms_key_id: str = "",
                  tags: dict[str, str] | None = None) -> bool:
    """Make secret ``name`` exist with a current value; True when this call gave it one.

    A missing secret is created holding ``value``; an existing one without a value (made by
    hand or by IaC) gets ``value`` as its first version. ``token`` is deterministic, so a
    retry, or a second setup racing this one, cannot add a second version: the loser gets
    ResourceExistsException and uses the winner's secret. ``what`` names the secret in
    messages.
    """
    try:
        described = sm_call("secretsmanager:DescribeSecret", name, client.describe_secret,
                            SecretId=name)
    except KeyNotFound:
        described = None
    if described is not None and described.get("DeletedDate"):
        raise KeyDisabled(
            f"{what} is scheduled for deletion: restore it with 'aws secretsmanager "
            f"restore-secret --secret-id {name}'"
        )
    if described is not None:
        if CURRENT in stages_of(described):
            return False
        sm_call("secretsmanager:PutSecretValue", name, client.put_secret_value,
                SecretId=name, ClientRequestToken=token, SecretString=value)
        return True
    kwargs: dict[str, Any] = {"Name": name, "ClientRequestToken": token, "SecretString": value,
                              "Description": description}
    if kms_key_id:
        kwargs["KmsKeyId"] = kms_key_id
    if tags:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    try:
        client.create_secret(**kwargs)
    except (ClientError, BotoCoreError) as error:
        if isinstance(error, ClientError) and error_code(error) == "ResourceExistsException":
            return False  # created by a concurrent setup (or an earlier try): use it
        raise translate(error, action="secretsmanager:CreateSecret", resource=name) from None
    return True


def stages_of(description: dict[str, Any]) -> dict[str, str]:
    """Staging label -> VersionId, from a DescribeSecret answer."""
    labels: dict[str, str] = {}
    for version_id, stages in (description.get("VersionIdsToStages") or {}).items():
        for stage in stages:
            labels[stage] = version_id
    return labels


def secret_tags(settings: Settings, role: str) -> dict[str, str]:
    """Tags of the secrets this project creates: what they hold and for which catalog."""
    return {
        "envelope-encryption:role": role,
        "envelope-encryption:catalog": settings.catalog,
        "envelope-encryption:metastore": settings.metastore_id,
    }


def sm_client_from_settings(settings: Settings, credential: Any | None = None,
                            client: Any = None) -> Any:
    """``client`` when given (tests, reuse), else a Secrets Manager client for ``settings``
    and ``credential`` (see :mod:`.session`)."""
    return client if client is not None else aws_client(settings, "secretsmanager", credential)
