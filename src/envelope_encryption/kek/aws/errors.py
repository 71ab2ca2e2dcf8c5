"""Translation of AWS SDK errors (KMS, Secrets Manager) into the project's own errors.

Both AWS back ends call :func:`translate_aws_error` (or wrap calls in :func:`aws_errors`) at
the provider border, so a job fails with one of :mod:`envelope_encryption.errors` and a
message that says what to do: which IAM action is missing on which resource, that a key is
disabled or pending deletion, that a wrapped DEK does not match its encryption context.

Messages carry the AWS error code and AWS's own message (which names principals, ARNs and
actions, never key material); nothing here ever sees plaintext.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from ...errors import (
    ConfigError,
    EnvelopeError,
    KeyAccessDenied,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyServiceThrottled,
    KeyUnwrapFailed,
)

# AWS's own message is useful (it names the principal and the action) but may be long.
_MAX_AWS_MESSAGE = 400

_ACCESS_DENIED = {
    "AccessDeniedException",
    "AccessDenied",
    "AccessDeniedFault",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
}
_NOT_FOUND = {"NotFoundException", "ResourceNotFoundException", "NoSuchEntity"}
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "SlowDown",
}
_BAD_CIPHERTEXT = {"InvalidCiphertextException", "IncorrectKeyException"}


def _service(action: str) -> str:
    prefix = action.split(":", 1)[0] if ":" in action else ""
    return {"kms": "AWS KMS", "secretsmanager": "AWS Secrets Manager"}.get(prefix, "AWS")


def _aws_message(error: ClientError) -> tuple[str, str]:
    details = error.response.get("Error", {}) if isinstance(error.response, dict) else {}
    code = str(details.get("Code") or "Unknown")
    message = str(details.get("Message") or "").strip()
    if len(message) > _MAX_AWS_MESSAGE:
        message = message[:_MAX_AWS_MESSAGE] + "..."
    return code, message


def translate_aws_error(
    error: ClientError, *, action: str, resource: str
) -> EnvelopeError:
    """The project error for a botocore ``ClientError`` raised by ``action`` on ``resource``.

    ``action`` is the IAM action of the call (``kms:Decrypt``, ``secretsmanager:GetSecretValue``)
    and ``resource`` what it was called on (key ARN or alias, secret name). The caller raises
    the result ``from None`` (the SDK's traceback adds nothing the message does not say).
    """
    code, aws_message = _aws_message(error)
    service = _service(action)
    said = f" ({code}: {aws_message})" if aws_message else f" ({code})"
    lowered = aws_message.lower()

    if code in _ACCESS_DENIED or code.startswith("AccessDenied"):
        if code in {"UnrecognizedClientException", "InvalidClientTokenId",
                    "InvalidSignatureException", "SignatureDoesNotMatch",
                    "ExpiredTokenException", "ExpiredToken"}:
            return KeyAccessDenied(
                f"{service} rejected the credentials used for {action} on {resource}{said}: "
                "check the Unity Catalog service credential (--service-credential) or the "
                "AWS credentials of this process, and the region"
            )
        where = (
            "the role's IAM policy and the key policy (docs/aws-kms.md)"
            if service == "AWS KMS"
            else "the role's IAM policy (and the resource policy, if any)"
        )
        return KeyAccessDenied(
            f"{service} denied {action} on {resource}{said}: grant {action} on that resource "
            f"to the IAM role of the Unity Catalog service credential, in {where}; or check "
            "that the resource, its region and any encryption context are the right ones"
        )
    if code in _NOT_FOUND:
        return KeyNotFound(
            f"{service} has no {resource} ({action}){said}: run the kek_setup job, or fix "
            "the key id/alias or secret name and the region in the bundle variables"
        )
    if code == "DisabledException":
        return KeyDisabled(
            f"{service} key {resource} is disabled ({action}){said}: enable it "
            "(aws kms enable-key) to unwrap the DEKs it protects"
        )
    if code == "KMSInvalidStateException":
        if "pending deletion" in lowered or "pendingdeletion" in lowered:
            return KeyDisabled(
                f"{service} key {resource} is pending deletion ({action}){said}: cancel the "
                "deletion at once (aws kms cancel-key-deletion, then enable-key) or every "
                "DEK it wraps, and the data under them, becomes unrecoverable"
            )
        if "disabled" in lowered:
            return KeyDisabled(
                f"{service} key {resource} is disabled ({action}){said}: enable it "
                "(aws kms enable-key)"
            )
        return KeyDisabled(
            f"{service} key {resource} is not in a usable state for {action}{said}: "
            "check its state with aws kms describe-key"
        )
    if code in _BAD_CIPHERTEXT:
        return KeyUnwrapFailed(
            f"{service} refused to unwrap with {resource} ({action}){said}: the wrapped DEK "
            "was made by another key, for another scope/version (encryption context), or "
            "its bytes were changed"
        )
    if code == "DecryptionFailure":
        return KeyUnwrapFailed(
            f"{service} could not decrypt {resource} ({action}){said}: grant kms:Decrypt on "
            "the secret's KMS key to the service credential's role, and check that key is "
            "enabled"
        )
    if code in _THROTTLED:
        return KeyServiceThrottled(
            f"{service} kept throttling {action} on {resource} after retries{said}: run the "
            "job again later, spread scheduled jobs, or ask AWS for a higher request quota"
        )
    if code in {"KeyUnavailableException", "DependencyTimeoutException",
                "KMSInternalException", "InternalServiceError", "InternalFailure",
                "ServiceUnavailable", "ServiceUnavailableException"}:
        return KeyServiceError(
            f"{service} was unavailable for {action} on {resource}{said}: the call can be "
            "retried; run the job again"
        )
    return KeyServiceError(f"{service} failed {action} on {resource}{said}")


def translate_botocore_error(
    error: BotoCoreError, *, action: str, resource: str
) -> EnvelopeError:
    """The project error for a client-side botocore failure (no credentials, no endpoint)."""
    service = _service(action)
    if isinstance(error, NoCredentialsError):
        return KeyAccessDenied(
            f"no AWS credentials for {action} on {resource}: on Databricks pass "
            "--service-credential=<Unity Catalog service credential>; elsewhere configure "
            "the default AWS credential chain"
        )
    if isinstance(error, NoRegionError):
        return ConfigError(
            f"no AWS region for {action} on {resource}: set --aws-region (bundle variable "
            "aws_region)"
        )
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return KeyServiceError(
            f"could not reach {service} for {action} on {resource} ({type(error).__name__}): "
            "check the region, --aws-endpoint-url and the network path (VPC endpoint, "
            "firewall) from the cluster"
        )
    return KeyServiceError(
        f"{service} call {action} on {resource} failed in the client ({type(error).__name__})"
    )


@contextmanager
def aws_errors(action: str, resource: str) -> Iterator[None]:
    """Run one AWS call, raising the project's error (``from None``) when it fails."""
    try:
        yield
    except ClientError as error:
        raise translate_aws_error(error, action=action, resource=resource) from None
    except BotoCoreError as error:
        raise translate_botocore_error(error, action=action, resource=resource) from None


# botocore logs whole request and response bodies at DEBUG level. For KMS (GenerateDataKey,
# Decrypt, Encrypt) and Secrets Manager (GetSecretValue) those bodies carry plaintext keys,
# so a job run with DEBUG logging would write keys to the driver log. These are the three
# message templates that carry bodies; the filter drops exactly them and nothing else.
_BODY_LOG_TEMPLATES = frozenset({
    "Response body:\n%r",
    "Making request for %s with params: %s",
    "Sending http request: %s",
})


class _DropBodyLogs:
    """A logging filter that drops botocore's body-carrying DEBUG records."""

    def filter(self, record: object) -> bool:
        return getattr(record, "msg", None) not in _BODY_LOG_TEMPLATES


_BODY_FILTER = _DropBodyLogs()


def silence_botocore_body_logs() -> None:
    """Keep request/response bodies (which may hold plaintext keys) out of every log.

    Idempotent; called by the AWS back ends before they make their first call.
    """
    import logging

    for name in ("botocore.parsers", "botocore.endpoint"):
        logger = logging.getLogger(name)
        if _BODY_FILTER not in logger.filters:
            logger.addFilter(_BODY_FILTER)
