"""A file run's keyring snapshot: one read of a scope's versions per micro-batch, shared by
the usage guard and the encryption, and a rotation on usage seen at once."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.jobs.ingest_stream import SnapshotKeyring
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse


@pytest.fixture()
def counted(spark, tmp_path):
    """A keyring whose store counts the reads of a scope's records."""
    store = TableDekStore(spark, f"sk{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "job")
    scope = f"{store.catalog}.hr"
    keyring.create_version(scope)
    reads = []
    current = store.current

    def counting(scope_read):
        reads.append(scope_read)
        return current(scope_read)

    store.current = counting
    return keyring, scope, reads


def test_a_snapshot_reads_a_scope_once_and_a_new_one_reads_again(counted):
    keyring, scope, reads = counted
    snapshot = SnapshotKeyring(keyring)
    version, key = snapshot.active_dek(scope)
    assert snapshot.dek(scope, version) is key  # the job's DEK cache, shared
    assert set(snapshot.deks(scope)) == {1}
    assert reads == [scope]
    # A version created meanwhile (by another run): this batch's snapshot keeps what it
    # read, the next batch's snapshot reads the keyring again and sees it.
    keyring.create_version(scope)
    assert snapshot.active(scope).version == 1
    before = len(reads)
    assert SnapshotKeyring(keyring).active(scope).version == 2
    assert len(reads) == before + 1

def test_a_rotation_through_the_snapshot_is_seen_by_it(counted):
    keyring, scope, _ = counted
    snapshot = SnapshotKeyring(keyring)
    assert snapshot.active(scope).version == 1
    created = snapshot.create_version(scope)  # as the usage guard rotates
    assert created.version == 2
    assert snapshot.active(scope).version == 2
    assert set(snapshot.deks(scope)) == {1, 2}
    assert snapshot.dek(scope, 2) is not None
