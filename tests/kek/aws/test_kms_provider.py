"""The KMS KEK provider against moto over HTTP: setup, wrapping, context binding, key pinning.

The contract every back end keeps (round trip, wrong scope/version, tampering, truncation,
rotation) is in tests/kek/test_contract.py; this file tests what is KMS's own.
"""

from __future__ import annotations

import base64
import logging
import re

import pytest

from envelope_encryption.errors import ConfigError, KeyNotFound, KeyUnwrapFailed
from envelope_encryption.kek import WrapContext, WrappedDek, build_kek_provider
from envelope_encryption.kek.aws.kms import default_alias, encryption_context
from envelope_encryption.secret import SecretKey
from tests.support.kms_strict import count_kms_requests, strict_kms

CTX = WrapContext("main.default", 1)


def _tags(kms, arn: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=arn)["Tags"]}


def test_ensure_creates_one_key_and_alias_then_reuses_it(make_kms_provider, make_kms_settings, kms):
    provider = make_kms_provider(metastore_id="ms-1", catalog="sales")
    first = provider.ensure()
    second = make_kms_provider(metastore_id="ms-1", catalog="sales").ensure()
    third = build_kek_provider(make_kms_settings(metastore_id="ms-1", catalog="sales")).ensure()

    assert first.created and not second.created and not third.created
    assert first.kek_id == second.kek_id == third.kek_id
    assert first.kek_id.startswith("arn:aws:kms:eu-west-1:") and ":key/" in first.kek_id
    assert len(kms.list_keys()["Keys"]) == 1
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/unity_catalog/ms-1/sales/cmk"] == first.kek_id.split("/")[-1]

    metadata = kms.describe_key(KeyId=first.kek_id)["KeyMetadata"]
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert "catalog sales" in metadata["Description"]
    assert "sales.crypto.dek_keyring" in metadata["Description"]
    tags = _tags(kms, first.kek_id)
    assert tags["envelope-encryption:catalog"] == "sales"
    assert tags["envelope-encryption:metastore-id"] == "ms-1"
    assert tags["envelope-encryption:alias"] == "alias/unity_catalog/ms-1/sales/cmk"
    # moto accepts any tag; AWS only this character set and these lengths.
    for key, value in tags.items():
        assert re.fullmatch(r"[\w .:/=+\-@]{1,128}", key), key
        assert re.fullmatch(r"[\w .:/=+\-@]{0,256}", value), value
    assert kms.get_key_rotation_status(KeyId=first.kek_id)["KeyRotationEnabled"] is True
    assert dict(first.details)["automatic_rotation"] == "automatic"


def test_ensure_with_rotation_off_leaves_it_off(make_kms_provider, kms):
    info = make_kms_provider(kms_enable_rotation="false").ensure()
    assert kms.get_key_rotation_status(KeyId=info.kek_id)["KeyRotationEnabled"] is False
    assert dict(info.details)["automatic_rotation"] == "off"


def test_ensure_with_custom_alias(make_kms_provider, kms):
    info = make_kms_provider(kms_key_alias="alias/team/pii-kek").ensure()
    target = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert target["alias/team/pii-kek"] == info.kek_id.split("/")[-1]
    assert "alias/unity_catalog/ms-1/main/cmk" not in target


def test_concurrent_setup_loses_the_alias_race_and_discards_its_own_key(make_kms_provider, kms):
    """Two kek_setup runs both saw no alias; the second's CreateAlias gets AlreadyExists.

    The race is made deterministic by letting the first setup finish, then running the
    second from the point where its DescribeKey found no alias (its key creation step).
    """
    winner = make_kms_provider().ensure()
    loser = make_kms_provider()
    metadata, created = loser._create_managed_key()

    assert created is False
    assert metadata["Arn"] == winner.kek_id
    keys = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in kms.list_keys()["Keys"]]
    states = {k["Arn"]: k["KeyState"] for k in keys}
    assert states.pop(winner.kek_id) == "Enabled"
    assert list(states.values()) == ["PendingDeletion"]  # the loser's unused key
    assert loser.ensure().kek_id == winner.kek_id


def test_existing_key_id_is_used_and_never_created(make_kms_provider, kms):
    existing = kms.create_key(Description="team key")["KeyMetadata"]
    for ref in (existing["KeyId"], existing["Arn"]):
        info = make_kms_provider(kms_key_id=ref).ensure()
        assert info.kek_id == existing["Arn"] and not info.created
    kms.create_alias(AliasName="alias/existing", TargetKeyId=existing["KeyId"])
    assert make_kms_provider(kms_key_id="alias/existing").ensure().kek_id == existing["Arn"]
    assert len(kms.list_keys()["Keys"]) == 1

    missing = make_kms_provider(kms_key_id="alias/nope")
    with pytest.raises(KeyNotFound, match=r"alias/nope \(--kms-key-id\) does not exist"):
        missing.ensure()
    assert len(kms.list_keys()["Keys"]) == 1


def test_describe_before_setup_says_not_found(make_kms_provider):
    with pytest.raises(KeyNotFound, match=r"kms:DescribeKey.*run the kek_setup job"):
        make_kms_provider().describe()


def test_settings_are_validated(make_kms_provider):
    with pytest.raises(ConfigError, match=r"either --kms-key-id .* or --kms-key-alias"):
        make_kms_provider(kms_key_id="alias/a", kms_key_alias="alias/b")
    with pytest.raises(ConfigError, match="invalid KMS alias"):
        make_kms_provider(kms_key_alias="unity_catalog/no-prefix")
    with pytest.raises(ConfigError, match="invalid KMS alias"):
        make_kms_provider(kms_key_alias="alias/aws/kms")
    with pytest.raises(ConfigError, match="--kms-rotation must be one of"):
        make_kms_provider(kms_rotation="yearly")
    with pytest.raises(ConfigError, match="--kms-enable-rotation must be true or false"):
        make_kms_provider(kms_enable_rotation="maybe")


def test_generate_dek_binds_context_and_records_the_key_arn(make_kms_provider, kms):
    provider = make_kms_provider(metastore_id="ms-1", catalog="main")
    info = provider.ensure()
    with count_kms_requests() as calls:
        dek, wrapped = provider.generate_dek(CTX)
    assert calls == {"GenerateDataKey": 1}
    assert isinstance(dek, SecretKey) and len(dek) == 32
    assert wrapped.kek_id == info.kek_id
    assert dek.reveal() not in wrapped.blob

    # The context is exactly what the docs and key policies rely on.
    context = {"metastore/catalog": "ms-1/main", "dek_scope": "main.default", "dek_version": "1"}
    assert encryption_context("ms-1", "main", CTX) == context
    # Any KMS client with the same context and key decrypts it (e.g. the UC SQL function)...
    plain = kms.decrypt(CiphertextBlob=wrapped.blob, KeyId=info.kek_id,
                        EncryptionContext=context)["Plaintext"]
    assert plain == dek.reveal()
    # ...and the provider's unwrap gives the same key.
    assert provider.unwrap(wrapped, CTX) == dek


def test_other_metastore_or_catalog_never_unwraps(make_kms_provider, kms):
    provider = make_kms_provider(metastore_id="ms-1", catalog="main", kms_key_alias="alias/shared")
    provider.ensure()
    _, wrapped = provider.generate_dek(CTX)
    for kwargs in ({"metastore_id": "ms-2", "catalog": "main"},
                   {"metastore_id": "ms-1", "catalog": "hr"}):
        other = make_kms_provider(kms_key_alias="alias/shared", **kwargs)
        with pytest.raises(KeyUnwrapFailed):
            other.unwrap(wrapped, CTX)


def test_unwrap_pins_the_recorded_key(make_kms_provider, kms):
    """A wrapped DEK claimed to be from another key is refused (AWS: IncorrectKeyException).

    Plain moto answers AccessDeniedException here; the strict patch gives AWS's answer.
    """
    provider = make_kms_provider()
    provider.ensure()
    _, wrapped = provider.generate_dek(CTX)
    other = kms.create_key()["KeyMetadata"]["Arn"]
    with strict_kms(), pytest.raises(KeyUnwrapFailed, match="IncorrectKeyException"):
        provider.unwrap(WrappedDek(wrapped.blob, other), CTX)


def test_wrap_uses_one_encrypt_call_and_records_the_key_arn(make_kms_provider):
    provider = make_kms_provider()
    info = provider.ensure()
    dek = SecretKey(bytes(range(32)))
    with count_kms_requests() as calls:
        wrapped = provider.wrap(dek, CTX)
    assert calls == {"Encrypt": 1}
    assert wrapped.kek_id == info.kek_id
    with pytest.raises(KeyUnwrapFailed, match=r"kms:Decrypt.*InvalidCiphertextException"):
        provider.unwrap(wrapped, WrapContext("main.default", 9))


def test_no_plaintext_dek_in_botocore_debug_logs(make_kms_provider, caplog):
    provider = make_kms_provider()
    provider.ensure()
    # Jobs quieten botocore (WARNING); turn its DEBUG logging fully on for this test.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="botocore"):
        dek, wrapped = provider.generate_dek(CTX)
        provider.unwrap(wrapped, CTX)
        provider.wrap(dek, WrapContext("main.default", 2))
    text = caplog.text
    assert "GenerateDataKey" in text or "generate_data_key" in text.lower()  # DEBUG was on
    for form in (dek.reveal().hex(), base64.b64encode(dek.reveal()).decode(), repr(dek.reveal())):
        assert form not in text
    assert "redacted" in repr(dek)


def test_default_alias_matches_the_original_notebooks():
    assert default_alias("1234-abcd", "main") == "alias/unity_catalog/1234-abcd/main/cmk"
