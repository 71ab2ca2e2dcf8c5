"""DEK states on the keyring itself (table store, local KEK, local Spark): what each state
decrypts and encrypts, the refusals, the integrity metadata behind retire / re-enable /
destroy, and what a destroy leaves in the table (docs/key-lifecycle.md)."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.errors import (
    ConfigError,
    DestroyedKey,
    KeyringError,
    UnknownKeyVersion,
)
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import DekState, Keyring
from envelope_encryption.keyring.base import LEGACY_KEY_TYPE, DekRecord
from envelope_encryption.keyring.integrity import Metadata
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.legacy.importer import LegacyDek, import_versions
from envelope_encryption.secret import SecretKey
from tests.support.keyring_tamper import rewrite
from tests.support.keyrings import append_signed, restarted


@pytest.fixture()
def ring(spark, tmp_path):
    store = TableDekStore(spark, f"kl{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    ring = Keyring(store, kek, "admin")
    for _ in range(3):
        ring.create_version(_scope(ring))
    return ring


def _scope(ring: Keyring) -> str:
    return f"{ring.store.catalog}.hr"


def _states(ring: Keyring) -> dict[int, DekState]:
    return {r.version: r.state for r in restarted(ring).versions(_scope(ring))}


def test_what_each_state_decrypts_and_encrypts():
    assert [s.decrypts for s in DekState] == [True, True, False, False]
    assert [s.encrypts for s in DekState] == [True, False, False, False]
    assert DekState.parse("decrypt-only") is DekState.DECRYPT_ONLY
    assert DekState.parse("DESTROYED") is DekState.DESTROYED
    with pytest.raises(ConfigError, match="decrypt-only"):
        DekState.parse("paused")


def test_a_decrypt_only_version_decrypts_but_never_encrypts_even_when_highest(ring):
    scope = _scope(ring)
    change = ring.set_state(scope, 3, DekState.DECRYPT_ONLY)
    assert (change.before, change.after, change.changed) == (
        DekState.ENABLED, DekState.DECRYPT_ONLY, True)
    assert change.new_active == 2 and "the active version is now v2" in str(change)
    fresh = restarted(ring)
    assert fresh.active(scope).version == 2
    assert set(fresh.deks(scope)) == {1, 2, 3}
    assert fresh.dek(scope, 3) == ring.dek(scope, 3)
    # Back to ENABLED: v3 encrypts again.
    assert ring.set_state(scope, 3, DekState.ENABLED).new_active == 3
    assert restarted(ring).active(scope).version == 3


def test_the_only_enabled_version_cannot_stop_encrypting(ring):
    scope = _scope(ring)
    ring.set_state(scope, 1, DekState.DECRYPT_ONLY)
    ring.set_state(scope, 2, DekState.RETIRED)
    for to in (DekState.DECRYPT_ONLY, DekState.RETIRED):
        with pytest.raises(KeyringError, match=r"only ENABLED version.*dek_generation"):
            ring.set_state(scope, 3, to)
    with pytest.raises(KeyringError, match="only ENABLED version"):
        ring.destroy(scope, 3, confirm=f"{scope}:v3")
    ring.create_version(scope)
    ring.set_state(scope, 3, DekState.DECRYPT_ONLY)
    assert restarted(ring).active(scope).version == 4


def test_state_changes_are_idempotent_and_refused_while_in_use(ring):
    scope = _scope(ring)
    assert ring.set_state(scope, 1, DekState.DECRYPT_ONLY).changed
    again = ring.set_state(scope, 1, DekState.DECRYPT_ONLY)
    assert not again.changed and "no change" in str(again)
    revisions = len(ring.store.history(scope))
    ring.set_state(scope, 1, DekState.DECRYPT_ONLY)
    assert len(ring.store.history(scope)) == revisions
    # Cells in use stop retire and destroy (not decrypt-only), unless forced.
    with pytest.raises(KeyringError, match="still use it"):
        ring.set_state(scope, 1, DekState.RETIRED, in_use=True)
    with pytest.raises(KeyringError, match="still use it"):
        ring.destroy(scope, 1, confirm=f"{scope}:v1", in_use=True)
    assert ring.set_state(scope, 1, DekState.RETIRED, in_use=True, force=True).changed
    with pytest.raises(UnknownKeyVersion, match="RETIRED"):
        restarted(ring).dek(scope, 1)
    with pytest.raises(UnknownKeyVersion, match="no DEK version 9"):
        ring.set_state(scope, 9, DekState.RETIRED)


def test_a_retirement_is_undone_only_by_the_explicit_command(ring):
    scope = _scope(ring)
    ring.set_state(scope, 1, DekState.RETIRED)
    # A table writer who deletes the RETIRED revision does not bring v1 back...
    rewrap = [r for r in ring.store.history(scope) if r.version == 1 and r.revision == 2]
    assert rewrap and rewrap[0].state is DekState.RETIRED
    rewrite(ring.store, lambda rows: [r for r in rows if not (
        r["key_alias"] == scope and r["key_version"] == 1 and r["revision"] == 2)])
    assert _states(ring)[1] is DekState.RETIRED
    # ... the explicit command does, and the metadata no longer lists it.
    change = ring.set_state(scope, 1, DekState.DECRYPT_ONLY)
    assert change.before is DekState.RETIRED and change.changed
    assert _states(ring)[1] is DekState.DECRYPT_ONLY
    assert (scope, 1) not in ring.integrity.require().metadata.retired
    assert restarted(ring).dek(scope, 1) == ring.dek(scope, 1)


def test_destroy_needs_the_scope_and_version_typed_out_again(ring):
    scope = _scope(ring)
    for confirm in ("", "yes", f"{scope}:v2", f"{scope}:1", scope):
        with pytest.raises(KeyringError, match=f"--confirm {scope}:v1"):
            ring.destroy(scope, 1, confirm=confirm)
    assert _states(ring)[1] is DekState.ENABLED
    assert (scope, 1) not in ring.integrity.require().metadata.destroyed


def test_destroy_leaves_a_tombstone_and_no_wrapped_key(ring):
    scope = _scope(ring)
    ring.set_state(scope, 1, DekState.DECRYPT_ONLY)
    ring.set_state(scope, 1, DekState.RETIRED)
    wrapped = {r.wrapped.blob for r in ring.store.history(scope) if r.version == 1}
    ring.dek(scope, 2)  # a cached DEK of another version: the cache is emptied too
    change = ring.destroy(scope, 1, confirm=f"{scope}:v1")
    assert (change.before, change.after) == (DekState.RETIRED, DekState.DESTROYED)
    assert change.purge.removed and len(ring.cache) == 0
    rows = ring.store.spark.table(ring.store.table).collect()
    v1 = [r for r in rows if r["key_alias"] == scope and r["key_version"] == 1]
    assert [(r["revision"], r["key_state"], bytes(r["wrapped_key"]), r["modified_by"])
            for r in v1] == [(4, "DESTROYED", b"", "admin")]
    assert not {bytes(r["wrapped_key"]) for r in rows} & wrapped
    # The other versions and the integrity record are untouched.
    assert set(restarted(ring).deks(scope)) == {2, 3}
    assert (scope, 1) in ring.integrity.require().metadata.destroyed
    with pytest.raises(DestroyedKey, match=f"{scope} v1 was destroyed"):
        restarted(ring).dek(scope, 1)
    # Idempotent, and terminal.
    again = ring.destroy(scope, 1, confirm=f"{scope}:v1")
    assert not again.changed and not again.purge.removed
    assert len(ring.store.history(scope)) == len([r for r in rows if r["key_alias"] == scope])
    for to in (DekState.ENABLED, DekState.DECRYPT_ONLY, DekState.RETIRED):
        with pytest.raises(KeyringError, match="never comes back"):
            ring.set_state(scope, 1, to)
    # A re-wrap of the keyring skips the tombstone (it has nothing to re-wrap).
    assert (scope, 1) not in ring.rewrap_all().rewrapped


def test_restored_rows_of_a_destroyed_version_stay_destroyed(ring):
    scope = _scope(ring)
    old_v1 = [r.asDict() for r in ring.store.spark.table(ring.store.table).collect()
              if r["key_alias"] == scope and r["key_version"] == 1]
    ring.destroy(scope, 1, confirm=f"{scope}:v1")
    # A table writer puts v1's old rows back instead of its tombstone (from time travel or
    # a backup): the integrity metadata still lists v1 as destroyed. (Restoring the whole
    # table, integrity record included, is what purge_residue's VACUUM prevents.)
    rewrite(ring.store, lambda rows: [r for r in rows if not (
        r["key_alias"] == scope and r["key_version"] == 1)] + old_v1)
    fresh = restarted(ring)
    assert fresh.versions(scope)[0].state is DekState.DESTROYED
    with pytest.raises(DestroyedKey):
        fresh.dek(scope, 1)
    assert set(fresh.deks(scope)) == {2, 3}


def test_metadata_without_destroyed_versions_is_written_as_before():
    metadata = Metadata("k", ("kek",), (), frozenset({("c.s", 1)}))
    assert "destroyed" not in metadata.to_json()
    assert Metadata.from_json(metadata.to_json()) == metadata
    shredded = Metadata("k", ("kek",), (), frozenset(), frozenset({("c.s", 2)}))
    assert Metadata.from_json(shredded.to_json()).destroyed == {("c.s", 2)}


def test_imported_legacy_keys_are_decrypt_only_and_older_imports_are_moved_there(spark,
                                                                                  tmp_path):
    store = TableDekStore(spark, f"kl{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    fresh_scope, old_scope = f"{store.catalog}.sales", f"{store.catalog}.hr"
    dek = SecretKey(b"0123456789abcdefghijklmnopqrstuv")
    # What an earlier release left: the legacy v1 ENABLED, a fresh v2 above it.
    append_signed(store, kek, DekRecord(
        scope=old_scope, version=1, wrapped=kek.wrap(dek, WrapContext(old_scope, 1)),
        kek_backend="local", key_type=LEGACY_KEY_TYPE))
    ring = Keyring(store, kek, "admin")
    ring.create_version(old_scope)
    found = {fresh_scope: [LegacyDek(1, dek)], old_scope: [LegacyDek(1, dek)]}
    dry = import_versions(found, store, kek, "the notebooks", dry_run=True)
    assert dry.decrypt_only == [f"{old_scope} v1"]
    assert _state_of(ring, old_scope, 1) is DekState.ENABLED  # a dry run changes nothing
    report = import_versions(found, store, kek, "the notebooks", "admin")
    assert report.imported == [f"{fresh_scope} v1"]
    assert report.activated == [f"{fresh_scope} v2"]
    assert report.decrypt_only == [f"{old_scope} v1"]
    for scope in (fresh_scope, old_scope):
        assert {r.version: r.state for r in restarted(ring).versions(scope)} == {
            1: DekState.DECRYPT_ONLY, 2: DekState.ENABLED}
        assert restarted(ring).dek(scope, 1) == dek
        assert restarted(ring).active(scope).version == 2
    # Idempotent.
    again = import_versions(found, store, kek, "the notebooks", "admin")
    assert again.imported == again.activated == again.decrypt_only == []


def _state_of(ring: Keyring, scope: str, version: int) -> DekState:
    return {r.version: r.state for r in restarted(ring).versions(scope)}[version]
