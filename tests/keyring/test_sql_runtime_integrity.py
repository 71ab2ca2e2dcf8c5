"""The SQL functions' runtime verifies a keyring record before unwrapping it, as the jobs'
Keyring does (``runtime.unwrap_checked``)."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import KeyringError, UnknownKeyVersion
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.base import INTEGRITY_KEY_TYPE
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.sql import runtime


@pytest.fixture
def deployment(spark, tmp_path, monkeypatch):
    worker = runtime._Worker()
    monkeypatch.setattr(runtime, "_worker", worker)
    catalog = f"rt{uuid.uuid4().hex[:8]}"
    settings = Settings(catalog=catalog, schemas=("hr",),
                        options={"local-kek-file": str(tmp_path / "k.key")})
    store = TableDekStore(spark, catalog, lakehouse=Lakehouse(False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "k.key")
    kek.ensure()
    ring = Keyring(store, kek, "admin")
    yield runtime.settings_payload(settings), ring, f"{catalog}.hr"
    worker.close()


def _rows(ring: Keyring) -> tuple[dict[int, dict], dict]:
    rows = [r.asDict() for r in ring.store.spark.table(ring.store.table).collect()]
    integrity = max((r for r in rows if r["key_type"] == INTEGRITY_KEY_TYPE),
                    key=lambda r: r["revision"])
    newest: dict[int, dict] = {}
    for row in rows:
        if row["key_type"] != INTEGRITY_KEY_TYPE and row["revision"] >= newest.get(
                row["key_version"], {"revision": 0})["revision"]:
            newest[row["key_version"]] = row
    return newest, integrity


def test_a_verified_record_unwraps_and_a_tampered_one_is_refused(deployment):
    payload, ring, scope = deployment
    ring.create_version(scope)
    ring.create_version(scope)
    records, integrity = _rows(ring)
    assert runtime.unwrap_checked(payload, records[1], integrity) == ring.dek(scope, 1).reveal()

    edited = dict(records[1], wrapped_key=records[2]["wrapped_key"])
    with pytest.raises(KeyringError, match=rf"{scope} v1 .* fails its integrity check"):
        runtime.unwrap_checked(payload, edited, integrity)
    with pytest.raises(KeyringError, match="carries no integrity tag"):
        runtime.unwrap_checked(payload, dict(records[1], record_tag=None), integrity)
    with pytest.raises(KeyringError, match="no integrity record yet"):
        runtime.unwrap_checked(payload, records[1], None)
    forged_integrity = dict(integrity, integrity=integrity["integrity"].replace(
        '"retired":[]', '"retired":[["a.b",1]]'))
    with pytest.raises(KeyringError, match="integrity record"):
        runtime.unwrap_checked(payload, records[2], forged_integrity)


def test_a_retired_version_stays_retired_even_with_its_enabled_row(deployment):
    payload, ring, scope = deployment
    ring.create_version(scope)
    ring.create_version(scope)
    enabled_row = _rows(ring)[0][1]
    ring.retire(scope, 1, in_use=False)
    _, integrity = _rows(ring)  # the newest integrity revision lists v1 as retired
    with pytest.raises(UnknownKeyVersion, match="retired"):
        runtime.unwrap_checked(payload, enabled_row, integrity)


def test_a_record_of_a_scope_the_deployment_does_not_serve_is_refused(deployment):
    payload, ring, scope = deployment
    other = scope.replace(".hr", ".sales")
    ring.create_version(other)  # a real, signed record of the same keyring
    records, integrity = _rows(ring)
    with pytest.raises(KeyringError, match=r"not .*sales: refused"):
        runtime.unwrap_checked(payload, records[1], integrity)


def test_unwrap_records_is_the_same_verification(deployment):
    """The batch entry the SQL calls refuses what unwrap_checked refuses, as a whole."""
    payload, ring, scope = deployment
    ring.create_version(scope)
    ring.create_version(scope)
    records, integrity = _rows(ring)
    deks = [ring.dek(scope, v).reveal() for v in (1, 2)]
    assert runtime.unwrap_records(payload, scope, [records[2], None, records[1]],
                                  integrity) == [deks[1], None, deks[0]]
    untagged = dict(records[1], record_tag=None)
    with pytest.raises(KeyringError, match="carries no integrity tag"):
        runtime.unwrap_records(payload, scope, [records[2], untagged], integrity)
    # Nothing to unwrap: no check and no key service call, whatever the integrity argument.
    assert runtime.unwrap_records(payload, scope, [None], "not json") == [None]
