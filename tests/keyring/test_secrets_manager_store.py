"""The Secrets Manager DEK store against moto: layout, append rules, racing writers, size."""

from __future__ import annotations

import json

import pytest

from envelope_encryption.errors import ConcurrentModification, KeyringError
from envelope_encryption.kek.base import WrappedDek
from envelope_encryption.keyring.base import DekRecord, DekState
from envelope_encryption.keyring.secrets_manager_store import (
    KEEP_REVISIONS,
    SecretsManagerDekStore,
    _fits,
    _with_record,
    empty_document,
    from_settings,
)
from tests.support.aws_clients import PausingClient
from tests.support.aws_fixtures import DEK_SECRET


def record(scope="main.sales", version=1, revision=1, kek_version="k1") -> DekRecord:
    return DekRecord(scope=scope, version=version, revision=revision, kek_backend="aws-sm",
                     wrapped=WrappedDek(bytes(60), "unity_catalog/ms1/main/kek", kek_version),
                     created_by="alice@example.com", modified_by="alice@example.com")


def version_count(sm) -> int:
    return len(sm.list_secret_version_ids(SecretId=DEK_SECRET, IncludeDeprecated=True)
               ["Versions"])


def current_document(sm, name=DEK_SECRET) -> dict:
    return json.loads(sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
                      ["SecretString"])


def test_ensure_is_idempotent_and_the_layout_is_documented_json(sm, sm_store):
    sm_store.ensure()
    sm_store.ensure()
    assert version_count(sm) == 1
    assert sm_store.history() == []
    first = record()
    sm_store.append(first)
    sm_store.append(first.next_revision("bob", wrapped=WrappedDek(bytes(60), "k", "k2")))
    document = current_document(sm)
    assert document["format"] == "envelope-encryption/deks"
    assert document["schema_version"] == 1 and document["sequence"] == 2
    revisions = document["scopes"]["main.sales"]["1"]
    assert [r["revision"] for r in revisions] == [1, 2]
    assert set(revisions[0]) == {
        "revision", "record_id", "state", "key_type", "wrapped", "kek_backend", "kek_id",
        "kek_version", "created_at", "created_by", "modified_at", "modified_by"}
    current = sm_store.current("main.sales")
    assert len(current) == 1 and current[0].revision == 2
    assert current[0].wrapped.kek_version == "k2" and current[0].modified_by == "bob"
    assert current[0].created_at == first.created_at


def test_history_before_setup_says_what_to_run(sm, sm_store):
    with pytest.raises(KeyringError, match="run the kek_setup job"):
        sm_store.history()


def test_append_rules(sm, sm_store):
    sm_store.ensure()
    sm_store.append(record())
    with pytest.raises(ConcurrentModification):
        sm_store.append(record())  # a second v1
    with pytest.raises(ConcurrentModification):
        sm_store.append(record(version=3))  # skips v2
    with pytest.raises(ConcurrentModification):
        sm_store.append(record(revision=3))  # skips revision 2
    sm_store.append(record(version=2))
    read_before = sm_store.current("main.sales")[0]
    sm_store.append(read_before.next_revision("bob", state=DekState.RETIRED))
    with pytest.raises(ConcurrentModification):
        sm_store.append(read_before.next_revision("carol"))  # built on a stale read
    assert [(r.version, r.state) for r in sm_store.current("main.sales")] == [
        (1, DekState.RETIRED), (2, DekState.ENABLED)]


def test_the_same_append_twice_stores_it_once(sm, sm_store):
    sm_store.ensure()
    one = record()
    sm_store.append(one)
    sm_store.append(one)
    assert version_count(sm) == 2  # the empty document and one write


def test_racing_writers_on_the_same_slot_one_wins_nothing_lost(sm):
    SecretsManagerDekStore(sm, DEK_SECRET).ensure()
    theirs = record(kek_version="theirs")
    ours = record(kek_version="ours")
    # B's whole append lands between A's read and A's put.
    writer_a = SecretsManagerDekStore(
        PausingClient(sm, lambda: SecretsManagerDekStore(sm, DEK_SECRET).append(theirs)),
        DEK_SECRET)
    with pytest.raises(ConcurrentModification):
        writer_a.append(ours)
    stored = SecretsManagerDekStore(sm, DEK_SECRET).history()
    assert [r.record_id for r in stored] == [theirs.record_id]


def test_racing_writers_on_different_scopes_both_land(sm):
    SecretsManagerDekStore(sm, DEK_SECRET).ensure()
    theirs = record(scope="main.hr")
    ours = record(scope="main.sales")
    client = PausingClient(sm, lambda: SecretsManagerDekStore(sm, DEK_SECRET).append(theirs))
    SecretsManagerDekStore(client, DEK_SECRET).append(ours)
    # Our first put lost the race (ResourceExists on the successor token); the retry landed.
    assert client.calls["put_secret_value"] == 2
    stored = {r.record_id for r in SecretsManagerDekStore(sm, DEK_SECRET).history()}
    assert stored == {theirs.record_id, ours.record_id}


def test_a_write_outside_the_protocol_is_merged_back(sm):
    sm_store = SecretsManagerDekStore(sm, DEK_SECRET)
    sm_store.ensure()
    sm_store.append(record(scope="main.hr"))
    by_hand = record(scope="main.ops")

    def console_edit():
        # Someone puts a new version by hand (random token) with one more record in it.
        document = current_document(sm)
        scratch = SecretsManagerDekStore(sm, "scratch")
        scratch.ensure()
        scratch.append(by_hand)
        document["scopes"]["main.ops"] = current_document(sm, "scratch")["scopes"]["main.ops"]
        sm.put_secret_value(SecretId=DEK_SECRET, SecretString=json.dumps(document))

    ours = record(scope="main.sales")
    SecretsManagerDekStore(PausingClient(sm, console_edit), DEK_SECRET).append(ours)
    assert {r.scope for r in sm_store.history()} == {"main.hr", "main.ops", "main.sales"}


def test_a_foreign_document_is_refused(sm, sm_store):
    sm.create_secret(Name=DEK_SECRET, SecretString='{"sales_dek": "abc"}')
    with pytest.raises(KeyringError, match="not a DEK store of this project"):
        sm_store.ensure()


def test_capacity_of_one_secret(sm, sm_store, record_property):
    """How many DEK versions fit in the 64 KB of one secret value (realistic sizes).

    The document is filled in memory with the store's own functions (fast), then written to
    the secret; the next append through the service is refused with an actionable error.
    """
    kek_version = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"  # VersionIds are UUIDs
    document, count = empty_document(), 0
    while True:
        scope = f"main.schema_{count // 4:03d}"  # four versions per schema
        fuller = _with_record(document, record(scope=scope, version=count % 4 + 1,
                                               kek_version=kek_version), KEEP_REVISIONS)
        if not _fits(fuller):
            break
        document, count = fuller, count + 1
    sm.create_secret(Name=DEK_SECRET, SecretString=json.dumps(document, separators=(",", ":")))
    with pytest.raises(KeyringError, match="64 KB"):
        sm_store.append(record(scope=f"main.schema_{count // 4:03d}", version=count % 4 + 1))
    assert len(sm_store.history()) == count
    record_property("dek_versions_per_secret", count)
    print(f"\n{count} DEK versions fit in one secret")
    assert 100 <= count <= 200


def test_from_settings_default_name(sm, sm_settings):
    sm_store = from_settings(sm_settings)
    assert sm_store.secret_name == "unity_catalog/ms1/main/deks"
    sm_store.ensure()
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=sm_store.secret_name)["Tags"]}
    assert tags["envelope-encryption:role"] == "deks"
