"""The keyring over the table store and the local KEK: versions, cache, concurrency,
rotation."""

from __future__ import annotations

import os
import pickle
import threading
import uuid

import pytest

from envelope_encryption.errors import (
    ConcurrentModification,
    KeyringError,
    UnknownKeyVersion,
)
from envelope_encryption.kek import WrapContext, WrappedDek
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import DekCache, DekState, Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.secret import SecretKey
from tests.support.keyrings import restarted


class CountingLocalKek(LocalKekProvider):
    """The real local provider, counting unwraps (the key-service calls a job makes)."""

    def __init__(self, path):
        super().__init__(path)
        self.unwraps = 0

    def _unwrap_key(self, wrapped, context):
        self.unwraps += 1
        return super()._unwrap_key(wrapped, context)


@pytest.fixture()
def ring(spark, tmp_path):
    store = TableDekStore(spark, f"k{uuid.uuid4().hex[:8]}", lakehouse=Lakehouse(False))
    store.ensure()
    kek = CountingLocalKek(tmp_path / "kek.key")
    kek.ensure()
    return Keyring(store, kek, "tester")


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


def test_each_version_unwrapped_once_per_keyring(ring):
    scope = f"{ring.store.catalog}.hr"
    ring.ensure_active(scope)
    ring.create_version(scope)
    ring = restarted(ring)
    ring.kek.unwraps = 0
    for _ in range(20):
        ring.deks(scope)
        ring.active_dek(scope)
        ring.dek(scope, 1)
    # Two DEK versions, plus the keyring's integrity key: once each per cache.
    assert ring.kek.unwraps == 3
    # Another Keyring given the same cache shares it...
    Keyring(ring.store, ring.kek, cache=ring.cache).deks(scope)
    assert ring.kek.unwraps == 3
    # ...one with its own cache (another process, or another job) unwraps again.
    Keyring(ring.store, ring.kek).deks(scope)
    assert ring.kek.unwraps == 6


def test_concurrent_writers_cannot_create_the_same_version(ring):
    scope = f"{ring.store.catalog}.hr"
    first, _ = ring.ensure_active(scope)
    stale = first.next_revision("other", state=DekState.ENABLED)
    ring.store.append(ring.integrity.sign(ring.integrity.require(), stale))
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
    ring = restarted(ring)
    assert {v: k.reveal() for v, k in ring.deks(scope).items()} == before
    assert ring.rewrap_all().rewrapped == []  # nothing left to do


def test_no_active_dek_is_a_clear_error(ring):
    with pytest.raises(KeyringError, match="run the kek_setup"):
        ring.active(f"{ring.store.catalog}.empty")


# -- the DEK cache ---------------------------------------------------------------------------


def test_dek_cache_holds_secret_keys_per_wrapping_and_never_shows_them():
    cache = DekCache()
    ctx = WrapContext("main.hr", 1)
    wrapped = WrappedDek(os.urandom(60), "kek", "1")
    dek = SecretKey(os.urandom(32), "dek main.hr v1")
    cache.put(ctx, wrapped, dek)
    assert cache.get(ctx, wrapped) is dek
    # Another version, another KEK version or other wrapped bytes are other entries.
    assert cache.get(WrapContext("main.hr", 2), wrapped) is None
    assert cache.get(ctx, WrappedDek(wrapped.blob, "kek", "2")) is None
    assert cache.get(ctx, WrappedDek(os.urandom(60), "kek", "1")) is None
    with pytest.raises(TypeError):
        cache.put(ctx, wrapped, dek.reveal())  # raw bytes are refused
    assert repr(cache) == "DekCache(1 keys)" and dek.reveal().hex() not in repr(cache)
    assert len(pickle.loads(pickle.dumps(cache))) == 0  # a pickled cache arrives empty
    cache.clear()
    assert len(cache) == 0


def test_dek_cache_unwraps_once_under_threads():
    cache = DekCache()
    ctx = WrapContext("main.hr", 1)
    wrapped = WrappedDek(b"w" * 60, "kek", "1")
    dek = SecretKey(os.urandom(32))
    calls = []

    def unwrap(w, c):
        calls.append(c)
        return dek

    assert cache.get_or_unwrap(ctx, wrapped, unwrap) is dek
    threads = [threading.Thread(target=cache.get_or_unwrap, args=(ctx, wrapped, unwrap))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [ctx]
