"""The keyring's integrity: whoever can write the keyring table cannot make a retired,
forged or foreign key decrypt (docs/keyring-integrity.md). Each test plays the table writer
and fails on a keyring without record authentication."""

from __future__ import annotations

import os
import uuid

import pytest

from envelope_encryption.errors import KeyringError, KeyUnwrapFailed, UnknownKeyVersion
from envelope_encryption.kek import WrapContext
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import DekState, Keyring
from envelope_encryption.keyring.base import INTEGRITY_KEY_TYPE
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.secret import SecretKey
from tests.support.keyring_tamper import rewrite, where
from tests.support.keyrings import restarted

OLD_COLUMNS = """
    record_id STRING NOT NULL, key_alias STRING NOT NULL, key_version INT NOT NULL,
    revision INT NOT NULL, key_state STRING NOT NULL, key_type STRING NOT NULL,
    wrapped_key BINARY NOT NULL, kek_backend STRING NOT NULL, kek_id STRING NOT NULL,
    kek_version STRING NOT NULL, created_at TIMESTAMP NOT NULL, created_by STRING NOT NULL,
    modified_at TIMESTAMP NOT NULL, modified_by STRING NOT NULL
"""


@pytest.fixture()
def ring(spark, tmp_path):
    store = TableDekStore(spark, f"ki{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    ring = Keyring(store, kek, "admin")
    scope = f"{store.catalog}.hr"
    ring.create_version(scope)
    ring.create_version(scope)
    return ring


def _scope(ring: Keyring) -> str:
    return f"{ring.store.catalog}.hr"


def test_records_carry_tags_and_a_fresh_process_verifies_them(ring):
    scope = _scope(ring)
    records = ring.store.current(scope)
    assert all(r.tag is not None and len(r.tag) == 32 for r in records)
    (integrity,) = ring.store.integrity_history()
    assert integrity.key_type == INTEGRITY_KEY_TYPE and integrity.tag is not None
    assert set(restarted(ring).deks(scope)) == {1, 2}
    # The integrity record is never listed among the DEK records.
    assert {r.scope for r in ring.store.current()} == {scope}


def test_state_edited_in_place_is_refused(ring):
    scope = _scope(ring)
    ring.retire(scope, 1, in_use=False)

    def enable(rows):
        for row in where(rows, key_alias=scope, key_version=1, revision=2):
            row["key_state"] = "ENABLED"
        return rows

    rewrite(ring.store, enable)
    with pytest.raises(KeyringError, match=rf"{scope} v1 \(revision 2\) fails its integrity"):
        restarted(ring).dek(scope, 1)


def test_deleting_the_retired_revision_does_not_bring_the_version_back(ring):
    scope = _scope(ring)
    ring.retire(scope, 1, in_use=False)
    rewrite(ring.store, lambda rows: [r for r in rows if not (
        r["key_alias"] == scope and r["key_version"] == 1 and r["revision"] == 2)])
    assert [(r.version, r.revision) for r in ring.store.current(scope)] == [(1, 1), (2, 1)]
    fresh = restarted(ring)
    with pytest.raises(UnknownKeyVersion, match="RETIRED"):
        fresh.dek(scope, 1)
    assert set(fresh.deks(scope)) == {2}
    assert fresh.versions(scope)[0].state is DekState.RETIRED


def test_a_newer_unauthenticated_revision_is_refused(ring):
    scope = _scope(ring)
    ring.retire(scope, 1, in_use=False)
    retired = ring.store.current(scope)[0]
    # A table writer appends "revision 3, ENABLED" through the store's own append.
    ring.store.append(retired.next_revision("attacker", state=DekState.ENABLED))
    with pytest.raises(KeyringError, match=rf"{scope} v1 \(revision 3\) carries no integrity"):
        restarted(ring).dek(scope, 1)


def test_a_forged_record_with_a_dek_the_writer_knows_is_refused(ring, tmp_path):
    scope = _scope(ring)
    # The attacker wraps a DEK they chose with a KEK of their own, and with a random tag.
    theirs = LocalKekProvider(tmp_path / "attacker.key")
    theirs.ensure()
    known = SecretKey(os.urandom(32))
    record = ring.store.current(scope)[-1].__class__(
        scope=scope, version=3, wrapped=theirs.wrap(known, WrapContext(scope, 3)),
        kek_backend="local", tag=os.urandom(32))
    ring.store.append(record)
    with pytest.raises(KeyringError, match=rf"{scope} v3 \(revision 1\) fails its integrity"):
        restarted(ring).active_dek(scope)


def test_swapping_wrapped_bytes_between_versions_is_refused(ring):
    scope = _scope(ring)

    def swap(rows):
        one, two = (where(rows, key_alias=scope, key_version=v)[0] for v in (1, 2))
        one["wrapped_key"], two["wrapped_key"] = two["wrapped_key"], one["wrapped_key"]
        one["record_tag"], two["record_tag"] = two["record_tag"], one["record_tag"]
        return rows

    rewrite(ring.store, swap)
    with pytest.raises(KeyringError, match="fails its integrity check"):
        restarted(ring).dek(scope, 1)


def test_a_replaced_integrity_record_is_refused(ring, tmp_path):
    scope = _scope(ring)

    def break_metadata(rows):
        (row,) = where(rows, key_type=INTEGRITY_KEY_TYPE)
        row["integrity"] = row["integrity"].replace('"retired":[]', '"retired":[["x.y",1]]')
        return rows

    rewrite(ring.store, break_metadata)
    with pytest.raises(KeyringError, match=r"integrity record .* fails its integrity check"):
        restarted(ring).dek(scope, 1)


def test_an_integrity_record_under_another_kek_is_refused(spark, tmp_path):
    # The attacker builds a whole keyring of their own (their KEK, their integrity key) and
    # copies its rows over ours.
    catalog = f"ki{uuid.uuid4().hex[:8]}"
    ours = Keyring(TableDekStore(spark, catalog, lakehouse=Lakehouse(False)),
                   LocalKekProvider(tmp_path / "ours.key"), "admin")
    ours.store.ensure()
    ours.kek.ensure()
    ours.create_version(f"{catalog}.hr")
    theirs_kek = LocalKekProvider(tmp_path / "theirs.key")
    theirs_kek.ensure()
    theirs = Keyring(ours.store, theirs_kek, "attacker")
    rewrite(ours.store, lambda rows: [])
    theirs.create_version(f"{catalog}.hr")
    with pytest.raises(KeyringError, match="is not a KEK of this keyring"):
        restarted(ours).dek(f"{catalog}.hr", 1)


def test_an_untagged_keyring_is_refused_until_kek_setup_upgrades_it_once(spark, tmp_path):
    catalog = f"ku{uuid.uuid4().hex[:8]}"
    scope = f"{catalog}.hr"
    # A keyring table as the first release made it: no record_tag / integrity columns.
    store = TableDekStore(spark, catalog, lakehouse=Lakehouse(False))
    store.lakehouse.ensure_schema(spark, catalog, "crypto", "test")
    spark.sql(f"CREATE TABLE {store.table} ({OLD_COLUMNS}) USING parquet")
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    dek = SecretKey(os.urandom(32))
    wrapped = kek.wrap(dek, WrapContext(scope, 1))
    spark.sql(f"INSERT INTO {store.table} VALUES ('r-1', '{scope}', 1, 1, 'ENABLED', "
              f"'ENCRYPTED_DEK', X'{wrapped.blob.hex()}', 'local', '{wrapped.kek_id}', "
              f"'{wrapped.kek_version}', current_timestamp(), 'old', current_timestamp(), "
              "'old')")
    ring = Keyring(store, kek, "admin")
    with pytest.raises(KeyringError, match="run the kek_setup job once"):
        ring.dek(scope, 1)
    with pytest.raises(KeyringError, match="run the kek_setup job once"):
        ring.create_version(scope)
    # kek_setup: the additive schema change, then the one-time upgrade.
    store.ensure()
    assert {"record_tag", "integrity"} <= set(spark.table(store.table).columns)
    ring.ensure_integrity()
    assert restarted(ring).dek(scope, 1) == dek
    # After the upgrade an untagged record is never accepted, and kek_setup does not sign it.
    current = store.current(scope)[0]
    store.append(current.next_revision("attacker"))
    ring.ensure_integrity()
    with pytest.raises(KeyringError, match="carries no integrity tag"):
        restarted(ring).dek(scope, 1)


def test_the_integrity_key_never_unwraps_as_a_dek(ring):
    (integrity,) = ring.store.integrity_history()
    with pytest.raises(KeyUnwrapFailed):
        ring.kek.unwrap(integrity.wrapped, WrapContext(integrity.scope, 1))
