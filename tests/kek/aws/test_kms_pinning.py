"""A repointed KMS alias, or a keyring record naming another key, is refused (moto server).

The keyring records the key ARNs it may use (kek_setup, and this project's own rotations)
in its authenticated integrity record; the provider then refuses any other key.
"""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.errors import KeyringError, KeyServiceError, KeyUnwrapFailed
from envelope_encryption.kek import WrapContext, WrappedDek
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from tests.support.keyrings import restarted
from tests.support.kms_strict import count_kms_requests, strict_kms


@pytest.fixture
def catalog() -> str:
    return f"kmp_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ring(spark, make_kms_provider, catalog) -> Keyring:
    store = TableDekStore(spark, catalog)
    store.ensure()
    ring = Keyring(store, make_kms_provider(catalog=catalog), actor="tests")
    ring.kek.ensure()
    ring.create_version(f"{catalog}.pii")
    return ring


def _repoint(kms, catalog: str) -> str:
    """What an attacker with kms:UpdateAlias does: point the alias at their own key."""
    theirs = kms.create_key(Description="not ours")["KeyMetadata"]["Arn"]
    kms.update_alias(AliasName=f"alias/unity_catalog/ms-1/{catalog}/cmk",
                     TargetKeyId=theirs.rsplit("/", 1)[-1])
    return theirs


def test_a_repointed_alias_is_refused_naming_both_keys(ring, kms, catalog, make_kms_provider):
    ours = ring.active(f"{catalog}.pii").wrapped.kek_id
    theirs = _repoint(kms, catalog)
    # A new process (a dek_generation run): it creates no DEK under their key.
    fresh = Keyring(ring.store, make_kms_provider(catalog=catalog), actor="tests")
    with count_kms_requests() as calls, pytest.raises(KeyringError) as refused:
        fresh.create_version(f"{catalog}.pii")
    assert ours in str(refused.value) and theirs in str(refused.value)
    assert "GenerateDataKey" not in calls and "Encrypt" not in calls
    assert [r.version for r in ring.store.current(f"{catalog}.pii")] == [1]
    # kek_setup: the keyring pins the provider first, then ensure refuses the alias's key.
    setup = Keyring(ring.store, make_kms_provider(catalog=catalog), actor="tests")
    with pytest.raises(KeyringError, match=theirs):
        setup.check_kek()
    pinned = make_kms_provider(catalog=catalog)
    pinned.pin(frozenset({ours}))
    with pytest.raises(KeyServiceError) as refused:
        pinned.ensure()
    assert ours in str(refused.value) and theirs in str(refused.value)
    # Pointing the alias back restores service.
    kms.update_alias(AliasName=f"alias/unity_catalog/ms-1/{catalog}/cmk",
                     TargetKeyId=ours.rsplit("/", 1)[-1])
    assert restarted(fresh).create_version(f"{catalog}.pii").version == 2


def test_a_dek_generated_after_the_alias_moved_mid_process_is_refused(ring, kms, catalog):
    # This process verified the keyring (and pinned the key) before the alias moved.
    theirs = _repoint(kms, catalog)
    with count_kms_requests() as calls, pytest.raises(KeyServiceError, match=theirs):
        ring.kek.generate_dek(WrapContext(f"{catalog}.pii", 2))
    assert "GenerateDataKey" not in calls


def test_a_record_naming_another_key_is_refused_before_any_call(ring, kms, catalog):
    ring.dek(f"{catalog}.pii", 1)  # verifies the keyring: the provider is now pinned
    theirs = kms.create_key(Description="not ours")["KeyMetadata"]["Arn"]
    blob = ring.active(f"{catalog}.pii").wrapped.blob
    with count_kms_requests() as calls, pytest.raises(KeyUnwrapFailed, match=theirs):
        ring.kek.unwrap(WrappedDek(blob, theirs), WrapContext(f"{catalog}.pii", 1))
    assert sum(calls.values()) == 0


def test_the_projects_own_rotation_records_the_new_key_before_the_alias_moves(ring, catalog):
    old = ring.active(f"{catalog}.pii").wrapped.kek_id
    new = ring.kek.rotate().kek_id
    metadata = ring.integrity.require().metadata
    assert set(metadata.kek_ids) == {old, new}
    # Every process, before or after the re-wrap, accepts both keys.
    assert restarted(ring).dek(f"{catalog}.pii", 1)
    ring.rewrap_all()
    with strict_kms():
        fresh = restarted(ring)
        assert fresh.create_version(f"{catalog}.pii").wrapped.kek_id == new
