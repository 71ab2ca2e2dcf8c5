"""KEK rotation with KMS through the keyring, on the keyring table (local Spark) and moto.

``new-key`` rotation creates a new KMS key, moves the alias, and ``Keyring.rewrap_all``
moves every DEK with ``ReEncrypt``: the tests count the requests at the KMS endpoint to show
that no plaintext DEK is sent to KMS for it (no ``Encrypt``), and disable the old key
(strict server) to show nothing depends on it afterwards.
"""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.errors import ConfigError, KeyAccessDenied
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from tests.support.keyrings import restarted
from tests.support.kms_strict import count_kms_requests, strict_kms


@pytest.fixture
def catalog() -> str:
    return f"kms_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def keyring_for(spark, make_kms_provider, catalog):
    def make(**options) -> Keyring:
        store = TableDekStore(spark, catalog)
        store.ensure()
        return Keyring(store, make_kms_provider(catalog=catalog, **options), actor="tests")

    return make


def _plain(keyring: Keyring, scopes) -> dict:
    return {(s, v): k.reveal() for s in scopes for v, k in keyring.deks(s).items()}


def test_rotate_to_new_key_and_rewrap_all(keyring_for, catalog, kms):
    keyring = keyring_for()
    first = keyring.kek.ensure()
    scopes = [f"{catalog}.pii", f"{catalog}.hr"]
    for scope in scopes:
        keyring.ensure_active(scope)
    keyring.create_version(scopes[0])
    before = _plain(keyring, scopes)
    assert len(before) == 3
    assert {r.wrapped.kek_id for r in keyring.store.current()} == {first.kek_id}

    rotated = keyring.kek.rotate()
    assert rotated.created and rotated.kek_id != first.kek_id
    assert dict(rotated.details)["previous_key"] == first.kek_id
    alias = f"alias/unity_catalog/ms-1/{catalog}/cmk"
    targets = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert targets[alias] == rotated.kek_id.split("/")[-1]
    assert kms.get_key_rotation_status(KeyId=rotated.kek_id)["KeyRotationEnabled"] is True
    tags = {t["TagKey"]: t["TagValue"]
            for t in kms.list_resource_tags(KeyId=rotated.kek_id)["Tags"]}
    assert tags["envelope-encryption:previous-key"] == first.kek_id

    # Until the re-wrap, old DEKs still unwrap with the old key (pinned by ARN).
    keyring = restarted(keyring)
    assert _plain(keyring, scopes) == before

    with count_kms_requests() as calls:
        report = keyring.rewrap_all()
    assert sorted(report.rewrapped) == sorted(before)
    assert report.kek.kek_id == rotated.kek_id
    assert calls["ReEncrypt"] == 3
    assert "Encrypt" not in calls and "GenerateDataKey" not in calls

    current = keyring.store.current()
    assert {r.wrapped.kek_id for r in current} == {rotated.kek_id}
    assert {r.revision for r in current} == {2}
    # Each old revision is still in the table (append-only history).
    assert len(keyring.store.history()) == 6

    # With the old key disabled (strict server enforces it), everything still decrypts.
    kms.disable_key(KeyId=first.kek_id.split("/")[-1])
    keyring = restarted(keyring)
    with strict_kms():
        assert _plain(keyring, scopes) == before
        created = keyring.create_version(scopes[1])
    assert created.wrapped.kek_id == rotated.kek_id

    # Running the re-wrap again changes nothing.
    again = keyring.rewrap_all()
    assert again.rewrapped == [] and len(again.already_current) == 4


def test_rewrap_failure_part_way_leaves_every_dek_usable(keyring_for, catalog):
    keyring = keyring_for()
    keyring.kek.ensure()
    scopes = [f"{catalog}.a", f"{catalog}.b"]
    for scope in scopes:
        keyring.ensure_active(scope)
    before = _plain(keyring, scopes)
    old_arn = keyring.active(scopes[0]).wrapped.kek_id
    new_arn = keyring.kek.rotate().kek_id

    keyring.rewrap_all(scopes=[scopes[0]])  # the first scope moves...
    with strict_kms(deny={"kms:ReEncryptFrom"}), pytest.raises(
        KeyAccessDenied, match="kms:ReEncryptFrom"
    ):
        keyring.rewrap_all()  # ...then KMS refuses the rest
    by_scope = {r.scope: r.wrapped.kek_id for r in keyring.store.current()}
    assert by_scope == {scopes[0]: new_arn, scopes[1]: old_arn}
    keyring = restarted(keyring)
    assert _plain(keyring, scopes) == before

    report = keyring.rewrap_all()  # a re-run finishes the work
    assert report.rewrapped == [(scopes[1], 1)]
    assert report.already_current == [(scopes[0], 1)]
    keyring = restarted(keyring)
    assert _plain(keyring, scopes) == before


def test_failed_rotation_keeps_the_alias_and_discards_the_new_key(make_kms_provider, kms):
    provider = make_kms_provider()
    first = provider.ensure()
    with strict_kms(deny={"kms:UpdateAlias"}), pytest.raises(
        KeyAccessDenied, match="kms:UpdateAlias"
    ):
        provider.rotate()
    assert provider.describe().kek_id == first.kek_id
    states = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"]
              for k in kms.list_keys()["Keys"]]
    assert sorted(states) == ["Enabled", "PendingDeletion"]


def test_rotate_on_demand_keeps_the_key_and_needs_no_rewrap(keyring_for, catalog, kms):
    """KMS on-demand rotation: new material under the same ARN. moto records the rotation
    but keeps the material (REFERENCE.md), so this checks the API use and the keyring's
    reaction, not the cryptography of KMS's material versions."""
    keyring = keyring_for(kms_rotation="on-demand")
    first = keyring.kek.ensure()
    scope = f"{catalog}.pii"
    keyring.ensure_active(scope)
    before = _plain(keyring, [scope])

    with count_kms_requests() as calls:
        rotated = keyring.kek.rotate()
    assert calls["RotateKeyOnDemand"] == 1 and "CreateKey" not in calls
    assert rotated.kek_id == first.kek_id
    rotations = kms.list_key_rotations(KeyId=first.kek_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]

    report = keyring.rewrap_all()
    assert report.rewrapped == [] and report.already_current == [(scope, 1)]
    keyring = restarted(keyring)
    assert _plain(keyring, [scope]) == before


def test_new_key_rotation_needs_an_alias(make_kms_provider, kms):
    key = kms.create_key()["KeyMetadata"]
    provider = make_kms_provider(kms_key_id=key["Arn"])
    provider.ensure()
    with pytest.raises(ConfigError, match="--kms-rotation=on-demand"):
        provider.rotate()
    assert len(kms.list_keys()["Keys"]) == 1

    # An existing key given by its alias (name or ARN): rotation moves that alias.
    kms.create_alias(AliasName="alias/team/kek", TargetKeyId=key["KeyId"])
    alias_arn = "arn:aws:kms:eu-west-1:123456789012:alias/team/kek"
    for ref in ("alias/team/kek", alias_arn):
        provider = make_kms_provider(kms_key_id=ref)
        before = provider.ensure().kek_id
        rotated = provider.rotate()
        assert rotated.kek_id != before
        assert provider.describe().kek_id == rotated.kek_id
    assert len(kms.list_keys()["Keys"]) == 3
