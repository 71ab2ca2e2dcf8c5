"""Translation of KMS errors into the project's errors, with actionable messages.

Most cases run against moto over HTTP. moto does not enforce what AWS does for disabled
keys, keys pending deletion, key pinning, IAM denials and throttling, so those tests wrap
the call in ``strict_kms()`` (tests/support/kms_strict.py): it patches the in-process moto
server's KMS request handlers to answer as AWS documents (DisabledException,
KMSInvalidStateException "is pending deletion", IncorrectKeyException, AccessDeniedException
naming the action, ThrottlingException). The key states themselves are set through the
ordinary KMS API (DisableKey, ScheduleKeyDeletion) and read from moto's model.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from envelope_encryption.errors import (
    ConfigError,
    KeyAccessDenied,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyServiceThrottled,
    KeyUnwrapFailed,
)
from envelope_encryption.kek.aws.errors import (
    translate_aws_error,
    translate_botocore_error,
)
from envelope_encryption.kek.aws.kms import from_settings
from envelope_encryption.kek.base import WrapContext
from tests.support.aws_fixtures import REGION
from tests.support.kms_strict import count_kms_requests, strict_kms

CTX = WrapContext("main.default", 1)


def _client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Decrypt")


@pytest.mark.parametrize(
    ("code", "message", "expected", "says"),
    [
        ("AccessDeniedException", "not authorized to perform: kms:Decrypt", KeyAccessDenied,
         "grant kms:Decrypt"),
        ("AccessDenied", "", KeyAccessDenied, "grant kms:Decrypt"),
        ("UnrecognizedClientException", "bad token", KeyAccessDenied, "service credential"),
        ("NotFoundException", "Alias x is not found.", KeyNotFound, "run the kek_setup job"),
        ("ResourceNotFoundException", "", KeyNotFound, "run the kek_setup job"),
        ("DisabledException", "k is disabled.", KeyDisabled, "aws kms enable-key"),
        ("KMSInvalidStateException", "k is pending deletion.", KeyDisabled,
         "cancel-key-deletion"),
        ("KMSInvalidStateException", "k is disabled.", KeyDisabled, "enable-key"),
        ("KMSInvalidStateException", "k is pending import.", KeyDisabled, "describe-key"),
        ("InvalidCiphertextException", "", KeyUnwrapFailed, "encryption context"),
        ("IncorrectKeyException", "", KeyUnwrapFailed, "made by another key"),
        ("ThrottlingException", "Rate exceeded", KeyServiceThrottled, "after retries"),
        ("TooManyRequestsException", "", KeyServiceThrottled, "after retries"),
        ("LimitExceededException", "", KeyServiceThrottled, "after retries"),
        ("KMSInternalException", "", KeyServiceError, "run the job again"),
        ("SomethingNew", "odd", KeyServiceError, "SomethingNew: odd"),
    ],
)
def test_translation_table(code, message, expected, says):
    error = translate_aws_error(_client_error(code, message), action="kms:Decrypt",
                                resource="alias/x")
    assert type(error) is expected
    assert says in str(error)
    assert "alias/x" in str(error)
    assert code in str(error)


def test_secrets_manager_wording():
    error = translate_aws_error(_client_error("AccessDeniedException"),
                                action="secretsmanager:GetSecretValue", resource="s")
    assert "AWS Secrets Manager denied secretsmanager:GetSecretValue on s" in str(error)
    assert "key policy" not in str(error)


def test_client_side_errors():
    error = translate_botocore_error(NoCredentialsError(), action="kms:Decrypt", resource="k")
    assert isinstance(error, KeyAccessDenied) and "--service-credential" in str(error)
    error = translate_botocore_error(NoRegionError(), action="kms:Decrypt", resource="k")
    assert isinstance(error, ConfigError) and "--aws-region" in str(error)


def test_long_aws_messages_are_cut():
    error = translate_aws_error(_client_error("AccessDeniedException", "x" * 5000),
                                action="kms:Decrypt", resource="k")
    assert len(str(error)) < 1000


def _key_id(info) -> str:
    # moto's DisableKey/EnableKey/ScheduleKeyDeletion take the bare key id, not the ARN.
    return info.kek_id.split("/")[-1]


@pytest.fixture
def ready(make_kms_provider):
    provider = make_kms_provider()
    info = provider.ensure()
    dek, wrapped = provider.generate_dek(CTX)
    return provider, info, dek, wrapped


def test_missing_permission_names_the_kms_action(ready):
    provider, info, dek, wrapped = ready
    with strict_kms(deny={"kms:Decrypt"}), pytest.raises(KeyAccessDenied) as denied:
        provider.unwrap(wrapped, CTX)
    message = str(denied.value)
    assert "denied kms:Decrypt on " + info.kek_id in message
    assert "grant kms:Decrypt" in message and "key policy" in message
    assert dek.reveal().hex() not in message

    with strict_kms(deny={"kms:GenerateDataKey"}), pytest.raises(
        KeyAccessDenied, match="grant kms:GenerateDataKey"
    ):
        provider.generate_dek(WrapContext("main.default", 2))
    with strict_kms(deny={"kms:ReEncryptFrom"}), pytest.raises(
        KeyAccessDenied, match="kms:ReEncryptFrom"
    ):
        provider.rewrap(wrapped, CTX)
    with strict_kms(deny={"kms:CreateKey"}), pytest.raises(
        KeyAccessDenied, match="grant kms:CreateKey"
    ):
        provider.rotate()


def test_disabled_key(ready, kms):
    provider, info, _, wrapped = ready
    kms.disable_key(KeyId=_key_id(info))
    with strict_kms():
        with pytest.raises(KeyDisabled, match=r"is disabled.*aws kms enable-key"):
            provider.unwrap(wrapped, CTX)
        with pytest.raises(KeyDisabled, match="is disabled"):
            provider.generate_dek(WrapContext("main.default", 2))
    # kek_setup refuses a disabled KEK even without the strict server (it reads the state).
    with pytest.raises(KeyDisabled, match="is Disabled: enable it"):
        provider.ensure()
    kms.enable_key(KeyId=_key_id(info))
    with strict_kms():
        assert len(provider.unwrap(wrapped, CTX)) == 32


def test_key_pending_deletion(ready, kms):
    provider, info, _, wrapped = ready
    kms.schedule_key_deletion(KeyId=_key_id(info), PendingWindowInDays=7)
    with strict_kms(), pytest.raises(KeyDisabled, match=r"pending deletion.*cancel-key-deletion"):
        provider.unwrap(wrapped, CTX)
    with pytest.raises(KeyDisabled, match="pending deletion: cancel it now"):
        provider.ensure()


def test_without_strict_patch_moto_ignores_key_states(ready, kms):
    """Documents the moto gap the strict patch closes (if moto fixes it, this fails)."""
    provider, info, _, wrapped = ready
    kms.disable_key(KeyId=_key_id(info))
    assert len(provider.unwrap(wrapped, CTX)) == 32


def test_throttling_after_retries(make_kms_settings, ready):
    """KMS keeps answering ThrottlingException: the client retries, then the job gets a clear
    error. The client here allows 2 attempts (production: adaptive mode, 10 attempts) so the
    test does not wait through ten back-offs; everything else is the production client."""
    _, _, _, wrapped = ready
    client = boto3.client(
        "kms", endpoint_url=make_kms_settings().option("aws-endpoint-url"), region_name=REGION,
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    quick = from_settings(make_kms_settings(), client=client)
    with strict_kms(throttle={"kms:Decrypt"}), count_kms_requests() as calls, pytest.raises(
        KeyServiceThrottled, match=r"kept throttling kms:Decrypt.*after retries"
    ):
        quick.unwrap(wrapped, CTX)
    assert calls["Decrypt"] == 2  # the retry went out on the wire


def test_production_client_retries_adaptively(make_kms_provider):
    client = make_kms_provider().client
    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.config.retries["total_max_attempts"] >= 5
    assert client.meta.region_name == REGION
