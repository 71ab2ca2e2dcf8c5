"""Keyring + TableDekStore (local Spark) over the azure provider: rotation and unwrap counts."""

from __future__ import annotations

import pytest

from envelope_encryption.errors import KeyAccessDenied, KeyDisabled
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from tests.support.azure_fixtures import make_provider
from tests.support.keyrings import restarted


@pytest.fixture
def keyring(spark, vault, request):
    catalog = f"azkr_{request.node.name[-12:].replace('-', '_')}"
    store = TableDekStore(spark, catalog)
    store.ensure()
    provider = make_provider(vault)
    provider.ensure()
    yield Keyring(store, provider, actor="tester"), catalog
    provider.close()


def test_unwrap_once_per_dek_version_per_process(vault, keyring):
    ring, catalog = keyring
    a, b = f"{catalog}.a", f"{catalog}.b"
    ring.create_version(a)
    ring.create_version(a)
    ring.create_version(b)
    ring = restarted(ring)  # as a new process would start
    vault.reset_counts()
    for _ in range(5):
        ring.dek(a, 1)
        ring.dek(a, 2)
        ring.active_dek(b)
        ring.deks(a)
    assert vault.counts["unwrapkey"] == 3, dict(vault.counts)


def test_rotation_failing_part_way_leaves_every_dek_usable_and_a_rerun_finishes(
        vault, keyring):
    ring, catalog = keyring
    a, b = f"{catalog}.a", f"{catalog}.b"
    for scope in (a, a, b):
        ring.create_version(scope)
    deks = {(r.scope, r.version): ring.dek(r.scope, r.version) for r in ring.store.current()}
    old_version = ring.kek.describe().kek_version
    new_version = ring.kek.rotate().kek_version

    # Each re-wrap costs three unwraps (old, rewrap, verify). Break the second DEK's.
    vault.inject(403, count=1, operations={"unwrapkey"}, after=3)
    with pytest.raises(KeyAccessDenied):
        ring.rewrap_all()
    current = ring.store.current()
    assert sorted(r.wrapped.kek_version == new_version for r in current) == [False, False, True]
    ring = restarted(ring)
    for record in current:  # every DEK still unwraps, under whichever version wraps it
        assert ring.dek(record.scope, record.version) == deks[(record.scope, record.version)]

    report = ring.rewrap_all()  # the re-run finishes the work
    assert len(report.rewrapped) == 2 and len(report.already_current) == 1
    current = ring.store.current()
    assert {r.wrapped.kek_version for r in current} == {new_version}
    ring = restarted(ring)
    for record in current:
        assert ring.dek(record.scope, record.version) == deks[(record.scope, record.version)]
    # The old wrappings stay in the history and unwrap while the old key version is enabled.
    old = [r for r in ring.store.history() if r.wrapped.kek_version == old_version]
    assert len(old) == 3
    for record in old:
        assert ring.kek.unwrap(record.wrapped, record.context) == deks[
            (record.scope, record.version)]

    # Once verified, the old key version can be disabled: current records do not need it.
    ring.kek.key_client.update_key_properties(ring.kek.key_name, old_version, enabled=False)
    fresh = make_provider(vault, ring.kek.key_name)
    for record in current:
        assert fresh.unwrap(record.wrapped, record.context) == deks[
            (record.scope, record.version)]
    with pytest.raises(KeyDisabled, match=old_version):
        fresh.unwrap(old[0].wrapped, old[0].context)
