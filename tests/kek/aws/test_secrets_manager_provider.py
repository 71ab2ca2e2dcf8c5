"""The aws-sm KEK provider against moto over HTTP: ensure, wrap/unwrap, rotation, errors.

The contract every back end keeps is in tests/kek/test_contract.py; this file tests what is
Secrets Manager's own: tokens, stages, the blob layout, the per-provider version cache.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from envelope_encryption.errors import (
    ConfigError,
    KeyAccessDenied,
    KeyDisabled,
    KeyNotFound,
    KeyServiceError,
    KeyServiceThrottled,
    KeyUnwrapFailed,
)
from envelope_encryption.kek.aws.secrets import deterministic_token, stages_of, translate
from envelope_encryption.kek.aws.secrets_manager import SecretsManagerKekProvider, from_settings
from envelope_encryption.kek.base import WrapContext, WrappedDek
from envelope_encryption.secret import SecretKey
from tests.support.aws_clients import CountingClient
from tests.support.aws_fixtures import KEK_SECRET

CTX = WrapContext("main.sales", 1)


def versions(sm, name=KEK_SECRET) -> dict[str, list[str]]:
    return {v["VersionId"]: v.get("VersionStages", [])
            for v in sm.list_secret_version_ids(SecretId=name)["Versions"]}


def dek() -> SecretKey:
    return SecretKey(bytes(range(32)), "test dek")


def test_ensure_creates_once_and_is_idempotent(sm, sm_kek):
    first = sm_kek.ensure()
    second = sm_kek.ensure()
    assert first.created and not second.created
    assert first.kek_version == second.kek_version
    assert list(versions(sm)) == [first.kek_version]
    # The version id is the deterministic token: any retry of the create names the same one.
    assert first.kek_version == deterministic_token(KEK_SECRET, "kek", "initial")
    document = json.loads(sm.get_secret_value(SecretId=KEK_SECRET,
                                              VersionStage="AWSCURRENT")["SecretString"])
    assert document["format"] == "envelope-encryption/kek"
    assert document["algorithm"] == "AES-256-GCM"


def test_a_racing_setup_cannot_make_a_second_version(sm, sm_kek):
    # Another setup job won the race with the same deterministic token and its own key.
    token = deterministic_token(KEK_SECRET, "kek", "initial")
    other = SecretsManagerKekProvider(sm, KEK_SECRET)
    winner = other.ensure()
    # Our create (same token, different random key) is refused by the service; we adopt it.
    info = sm_kek.ensure()
    assert not info.created and info.kek_version == winner.kek_version == token
    assert len(versions(sm)) == 1
    wrapped = other.wrap(dek(), CTX)
    assert sm_kek.unwrap(wrapped, CTX) == dek()


def test_same_token_twice_is_one_version(sm, sm_kek):
    sm_kek.ensure()
    value = sm.get_secret_value(SecretId=KEK_SECRET, VersionStage="AWSCURRENT")
    token = value["VersionId"]
    # A retried PutSecretValue with the same token and value is a no-op...
    sm.put_secret_value(SecretId=KEK_SECRET, ClientRequestToken=token,
                        SecretString=value["SecretString"])
    assert len(versions(sm)) == 1
    # ...and with another value it is refused, never a second version.
    with pytest.raises(ClientError) as caught:
        sm.put_secret_value(SecretId=KEK_SECRET, ClientRequestToken=token,
                            SecretString=value["SecretString"].replace('"key"', '"key" '))
    assert caught.value.response["Error"]["Code"] == "ResourceExistsException"
    assert len(versions(sm)) == 1


def test_wrapped_dek_layout_and_refusal_messages(sm, sm_kek):
    sm_kek.ensure()
    wrapped = sm_kek.wrap(dek(), CTX)
    assert len(wrapped.blob) == 60 and wrapped.kek_id == KEK_SECRET
    with pytest.raises(KeyUnwrapFailed, match="another scope/version"):
        sm_kek.unwrap(wrapped, WrapContext("main.hr", 1))
    with pytest.raises(KeyUnwrapFailed, match="truncated"):
        sm_kek.unwrap(WrappedDek(wrapped.blob[:40], wrapped.kek_id, wrapped.kek_version), CTX)
    with pytest.raises(KeyUnwrapFailed, match="sm-kek-secret"):
        sm_kek.unwrap(WrappedDek(wrapped.blob, "other/kek", wrapped.kek_version), CTX)


def test_unwrap_names_a_missing_kek_version(sm, sm_kek):
    sm_kek.ensure()
    wrapped = sm_kek.wrap(dek(), CTX)
    gone = WrappedDek(wrapped.blob, KEK_SECRET, "00000000-0000-4000-8000-000000000000")
    with pytest.raises(KeyNotFound, match="restore that secret version"):
        sm_kek.unwrap(gone, CTX)


def test_rotation_moves_the_stages_and_binds_the_version(sm, sm_kek):
    v1 = sm_kek.ensure().kek_version
    old = sm_kek.wrap(dek(), CTX)
    info = sm_kek.rotate()
    assert info.kek_version != v1
    stages = versions(sm)
    assert stages[info.kek_version] == ["AWSCURRENT"]
    assert stages[v1] == ["AWSPREVIOUS"]
    # A wrapping names its version: the old blob under the new version's key fails.
    with pytest.raises(KeyUnwrapFailed):
        sm_kek.unwrap(WrappedDek(old.blob, KEK_SECRET, info.kek_version), CTX)


def test_interrupted_rotation_is_finished_not_repeated(sm, sm_kek):
    v1 = sm_kek.ensure().kek_version
    # A rotation stopped after its put: a new version sits at AWSPENDING, not promoted.
    pending = SecretsManagerKekProvider(sm, KEK_SECRET)
    value = sm.get_secret_value(SecretId=KEK_SECRET, VersionStage="AWSCURRENT")["SecretString"]
    document = json.loads(value)
    document["key"] = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes
    answer = sm.put_secret_value(SecretId=KEK_SECRET, ClientRequestToken=
                                 "11111111-2222-4333-8444-555555555555",
                                 SecretString=json.dumps(document), VersionStages=["AWSPENDING"])
    assert sm_kek.describe().kek_version == v1  # not promoted: wraps still use v1
    info = pending.rotate()
    assert info.kek_version == answer["VersionId"]
    stages = versions(sm)
    assert len(stages) == 2
    assert stages[answer["VersionId"]] == ["AWSCURRENT"] and stages[v1] == ["AWSPREVIOUS"]


def test_kek_versions_are_read_once_per_provider(sm):
    counting = CountingClient(sm)
    writer = SecretsManagerKekProvider(counting, KEK_SECRET)
    writer.ensure()
    wrapped = writer.wrap(dek(), CTX)
    sm_kek = SecretsManagerKekProvider(counting, KEK_SECRET)  # a new process: nothing read
    counting.calls.clear()
    for _ in range(5):
        assert sm_kek.unwrap(wrapped, CTX) == dek()
    assert counting.calls["get_secret_value"] == 1


def test_missing_secret_and_deleted_secret_are_actionable(sm, sm_kek):
    with pytest.raises(KeyNotFound, match="run the kek_setup job"):
        sm_kek.describe()
    sm_kek.ensure()
    sm.delete_secret(SecretId=KEK_SECRET, RecoveryWindowInDays=7)
    with pytest.raises(KeyDisabled, match="restore-secret"):
        sm_kek.describe()
    with pytest.raises(KeyDisabled, match="restore-secret"):
        sm_kek.ensure()
    sm.restore_secret(SecretId=KEK_SECRET)
    assert sm_kek.describe().kek_version


def test_a_secret_of_another_kind_is_refused(sm, sm_kek):
    sm.create_secret(Name=KEK_SECRET, SecretString='{"kek_password": "x", "kek_salt": "y"}')
    with pytest.raises(KeyServiceError, match="does not hold a KEK of this project"):
        sm_kek.ensure()


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "GetSecretValue")


def test_sdk_errors_become_project_errors_naming_the_action():
    denied = translate(
        _client_error("AccessDeniedException", "User: arn:aws:sts::1:assumed-role/uc is not "
                      "authorized to perform: secretsmanager:GetSecretValue"),
        action="secretsmanager:GetSecretValue", resource=KEK_SECRET,
    )
    assert isinstance(denied, KeyAccessDenied)
    assert "grant secretsmanager:GetSecretValue" in str(denied) and KEK_SECRET in str(denied)
    throttled = translate(_client_error("ThrottlingException", "Rate exceeded"),
                          action="secretsmanager:PutSecretValue", resource=KEK_SECRET)
    assert isinstance(throttled, KeyServiceThrottled)
    limit = translate(_client_error("LimitExceededException", "too many"),
                      action="secretsmanager:PutSecretValue", resource=KEK_SECRET)
    assert isinstance(limit, KeyServiceThrottled)
    deleted = translate(
        _client_error("InvalidRequestException",
                      "You can't perform this operation on the secret because it was marked "
                      "for deletion."),
        action="secretsmanager:GetSecretValue", resource=KEK_SECRET,
    )
    assert isinstance(deleted, KeyDisabled) and "restore-secret" in str(deleted)
    missing = translate(_client_error("ResourceNotFoundException", "not found"),
                        action="secretsmanager:GetSecretValue", resource=KEK_SECRET)
    assert isinstance(missing, KeyNotFound)


def test_from_settings_uses_the_endpoint_and_default_names(sm, sm_settings):
    sm_kek = from_settings(sm_settings)
    assert sm_kek.secret_name == "unity_catalog/ms1/main/kek"
    info = sm_kek.ensure()
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=sm_kek.secret_name)["Tags"]}
    assert tags["envelope-encryption:role"] == "kek"
    assert stages_of(sm.describe_secret(SecretId=sm_kek.secret_name))["AWSCURRENT"] == \
        info.kek_version


def test_no_secret_name_is_a_config_error(sm):
    with pytest.raises(ConfigError, match="sm-kek-secret"):
        SecretsManagerKekProvider(sm, "")
