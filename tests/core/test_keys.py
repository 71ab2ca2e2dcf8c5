"""Shared pieces, the local KEK and the keyring (versions, cache, concurrency, rotation)."""

from __future__ import annotations

import os
import pickle
import stat
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import (
    ConcurrentModification,
    ConfigError,
    KeyNotFound,
    KeyringError,
    KeyUnwrapFailed,
    UnknownKeyVersion,
)
from envelope_encryption.identifiers import ColumnPlace, parse_scope, parse_table_name, quote
from envelope_encryption.kek.base import WrapContext, WrappedDek
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import DekState, Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.secret import SecretKey


class CountingLocalKek(LocalKekProvider):
    """The real local provider, counting unwraps (the key-service calls a job makes)."""

    def __init__(self, path):
        super().__init__(path)
        self.unwraps = 0

    def unwrap(self, wrapped, context):
        self.unwraps += 1
        return super().unwrap(wrapped, context)


@pytest.fixture()
def ring(spark, tmp_path):
    store = TableDekStore(spark, f"k{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = CountingLocalKek(tmp_path / "kek.key")
    kek.ensure()
    return Keyring(store, kek, "tester")


# -- secret and identifiers ------------------------------------------------------------------


def test_secret_key_never_shows_its_bytes():
    material = os.urandom(32)
    key = SecretKey(material, "dek x v1")
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert material.hex() not in text and repr(material) not in text
        assert "redacted" in text
    assert key == SecretKey(material) and key != SecretKey(os.urandom(32))
    with pytest.raises(TypeError):
        hash(key)
    assert pickle.loads(pickle.dumps(key)).reveal() == material


@pytest.mark.parametrize("bad", [
    "a`b", "a.b", "a b", "x; DROP TABLE t", "1abc", "", "a'b", 'a"b', "a\nb", "ä", "a" * 300,
])
def test_identifiers_refuse_injection(bad):
    with pytest.raises(ConfigError):
        quote(bad)
    with pytest.raises(ConfigError):
        ColumnPlace("main", "hr", "t", bad)


def test_identifier_helpers():
    assert quote("my_table-1") == "`my_table-1`"
    assert parse_scope("main.hr") == ("main", "hr")
    assert parse_table_name("hr.people", "main") == ("main", "hr", "people")
    with pytest.raises(ConfigError):
        parse_table_name("a.b.c.d", "main")
    with pytest.raises(ConfigError):
        parse_scope("main")


def test_settings_validate():
    with pytest.raises(ConfigError, match="unknown KEK back end"):
        Settings(backend="gcp")
    with pytest.raises(ConfigError, match="invalid catalog"):
        Settings(catalog="<catalog>")
    with pytest.raises(ConfigError, match="unknown back-end option"):
        Settings(options={"nope": "1"})
    with pytest.raises(ConfigError, match="needs --aws-region"):
        Settings(backend="aws-kms").require("aws-region")
    assert Settings().option("local-kek-file") == ".envelope/local-kek.key"
    assert Settings(metastore_id="3b7d2c5e-1f2a-4c3d-9e8f-0a1b2c3d4e5f").metastore_id[0] == "3"
    with pytest.raises(ConfigError, match="invalid metastore id"):
        Settings(metastore_id="a/b")


# -- local KEK -------------------------------------------------------------------------------


def test_local_kek_file_is_private_and_checked(tmp_path):
    path = tmp_path / "dir" / "kek.key"
    kek = LocalKekProvider(path)
    with pytest.raises(KeyNotFound, match="run the kek_setup job"):
        kek.describe()
    info = kek.ensure()
    assert info.created and info.kek_version == "1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not kek.ensure().created  # idempotent
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        kek.describe()


def test_local_kek_wrap_binds_scope_and_version(tmp_path):
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    ctx = WrapContext("main.hr", 1)
    dek, wrapped = kek.generate_dek(ctx)
    assert len(dek) == 32 and dek.reveal() not in wrapped.blob
    assert kek.unwrap(wrapped, ctx) == dek
    for other in (WrapContext("main.hr", 2), WrapContext("main.sales", 1)):
        with pytest.raises(KeyUnwrapFailed):
            kek.unwrap(wrapped, other)
    tampered = WrappedDek(bytes([wrapped.blob[0] ^ 1]) + wrapped.blob[1:], wrapped.kek_id,
                          wrapped.kek_version)
    with pytest.raises(KeyUnwrapFailed):
        kek.unwrap(tampered, ctx)
    with pytest.raises(KeyUnwrapFailed, match="truncated"):
        kek.unwrap(WrappedDek(wrapped.blob[:-1], wrapped.kek_id, "1"), ctx)


def test_local_kek_rotation_keeps_old_versions(tmp_path):
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    ctx = WrapContext("main.hr", 1)
    dek, old = kek.generate_dek(ctx)
    assert kek.rotate().kek_version == "2"
    new = kek.wrap(dek, ctx)
    assert new.kek_version == "2"
    assert kek.unwrap(old, ctx) == kek.unwrap(new, ctx) == dek
    with pytest.raises(KeyNotFound):
        kek.unwrap(WrappedDek(old.blob, old.kek_id, "9"), ctx)


# -- keyring ---------------------------------------------------------------------------------


def test_versions_are_numbered_without_gaps_and_one_is_active(ring):
    scope = f"{ring.store.catalog}.hr"
    first, created = ring.ensure_active(scope)
    assert created and first.version == 1
    again, created = ring.ensure_active(scope)
    assert not created and again.record_id == first.record_id
    ring.create_version(scope)
    ring.create_version(scope)
    assert [r.version for r in ring.versions(scope)] == [1, 2, 3]
    assert ring.active(scope).version == 3
    assert set(ring.deks(scope)) == {1, 2, 3}
    other = f"{ring.store.catalog}.sales"
    assert ring.ensure_active(other)[0].version == 1


def test_each_version_unwrapped_once_per_process(ring):
    scope = f"{ring.store.catalog}.hr"
    ring.ensure_active(scope)
    ring.create_version(scope)
    from envelope_encryption.keyring import clear_dek_cache

    clear_dek_cache()
    ring.kek.unwraps = 0
    for _ in range(20):
        ring.deks(scope)
        ring.active_dek(scope)
        ring.dek(scope, 1)
    assert ring.kek.unwraps == 2
    # Another Keyring object in the same process shares the cache.
    Keyring(ring.store, ring.kek).deks(scope)
    assert ring.kek.unwraps == 2


def test_concurrent_writers_cannot_create_the_same_version(ring):
    scope = f"{ring.store.catalog}.hr"
    first, _ = ring.ensure_active(scope)
    stale = first.next_revision("other", state=DekState.ENABLED)
    ring.store.append(stale)
    with pytest.raises(ConcurrentModification):
        ring.store.append(first.next_revision("late"))  # revision 2 again
    duplicate = first.__class__(scope=scope, version=1, wrapped=first.wrapped,
                                kek_backend="local")
    with pytest.raises(ConcurrentModification):
        ring.store.append(duplicate)
    gap = first.__class__(scope=scope, version=5, wrapped=first.wrapped, kek_backend="local")
    with pytest.raises(ConcurrentModification):
        ring.store.append(gap)
    assert [(r.version, r.revision) for r in ring.versions(scope)] == [(1, 2)]


def test_retire_refused_while_in_use(ring):
    scope = f"{ring.store.catalog}.hr"
    ring.ensure_active(scope)
    ring.create_version(scope)
    with pytest.raises(KeyringError, match="still use it"):
        ring.retire(scope, 1, in_use=True)
    assert ring.retire(scope, 1, in_use=True, force=True).state is DekState.RETIRED
    assert set(ring.deks(scope)) == {2}
    with pytest.raises(UnknownKeyVersion, match="RETIRED"):
        ring.dek(scope, 1)
    with pytest.raises(UnknownKeyVersion):
        ring.dek(scope, 7)


def test_rewrap_all_after_kek_rotation(ring):
    scope = f"{ring.store.catalog}.hr"
    ring.ensure_active(scope)
    ring.create_version(scope)
    before = {v: k.reveal() for v, k in ring.deks(scope).items()}
    ring.kek.rotate()
    report = ring.rewrap_all()
    assert sorted(report.rewrapped) == [(scope, 1), (scope, 2)]
    assert all(r.wrapped.kek_version == "2" and r.revision == 2 for r in ring.versions(scope))
    from envelope_encryption.keyring import clear_dek_cache

    clear_dek_cache()
    assert {v: k.reveal() for v, k in ring.deks(scope).items()} == before
    assert ring.rewrap_all().rewrapped == []  # nothing left to do


def test_no_active_dek_is_a_clear_error(ring):
    with pytest.raises(KeyringError, match="run the kek_setup"):
        ring.active(f"{ring.store.catalog}.empty")
