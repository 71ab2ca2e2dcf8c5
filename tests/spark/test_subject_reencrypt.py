"""Re-encryption of subject cells, batch by batch (pure): old versions move to the active one
under the same salt with their type tag; cells under the active version are authenticated
and kept; erased subjects' cells are kept byte for byte; anything that does not open fails.
And the predicate's function: erased subjects excluded, its key in no plan."""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.cell.subject import (
    SubjectCiphers,
    decrypt_subject_many,
    encrypt_subject_many,
    new_salt,
    parse_subject_cell,
)
from envelope_encryption.errors import DecryptionError, FormatError, UnknownKeyVersion
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.subject_reencrypt import (
    drop_live_subject_function,
    live_condition,
    live_subject_function,
    reencrypt_subject_many,
)

PLACE = "main.crm.orders.email"
H1, H2, H3 = "1" * 32, "2" * 32, "3" * 32


def _ciphers():
    return SubjectCiphers("main.crm", {1: bytes(32), 2: bytes(range(32))})


def _batch():
    """Cells of three subjects: H1 and H2 under v1 (string, int), H3 under v2."""
    ciphers, salts = _ciphers(), [new_salt(), new_salt(), new_salt()]
    v1s = encrypt_subject_many(["ada", None], [H1, H1], salts[:1] * 2, [False] * 2, ciphers,
                               1, "string", PLACE)
    v1i = encrypt_subject_many(["42"], [H2], salts[1:2], [False], ciphers, 1, "int", PLACE)
    v2 = encrypt_subject_many(["grace"], [H3], salts[2:], [False], ciphers, 2, "string",
                              PLACE)
    values = [*v1s, *v1i, *v2]
    return ciphers, values, [H1, H1, H2, H3], [salts[0], salts[0], salts[1], salts[2]]


def test_old_versions_move_under_the_same_salt_and_current_cells_stay():
    ciphers, values, hashes, salts = _batch()
    erased = [False] * 4
    out = reencrypt_subject_many(values, hashes, salts, erased, ciphers, 2, PLACE)
    assert out[1] is None and out[3] == values[3]  # NULL, and the v2 cell kept as it is
    assert [parse_subject_cell(c)[:2] for c in (out[0], out[2])] == [(2, "string"), (2, "int")]
    assert decrypt_subject_many(out, hashes, salts, erased, ciphers, PLACE, strict=True) == [
        "ada", None, "42", "grace"]
    # Again: nothing moves.
    assert reencrypt_subject_many(out, hashes, salts, erased, ciphers, 2, PLACE) == out


def test_an_erased_subjects_cells_are_kept_byte_for_byte():
    ciphers, values, hashes, salts = _batch()
    erased = [True, True, False, False]
    salts = [None, None, salts[2], salts[3]]
    out = reencrypt_subject_many(values, hashes, salts, erased, ciphers, 2, PLACE)
    assert out[:2] == values[:2]
    assert parse_subject_cell(out[2])[0] == 2


@pytest.mark.parametrize("case", ["not a subject cell", "tampered", "another subject",
                                  "no salt", "NULL subject"])
def test_a_cell_that_does_not_open_fails_the_batch(case):
    ciphers, values, hashes, salts = _batch()
    erased = [False] * 4
    if case == "not a subject cell":
        values[0] = "ee1:1:string:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    elif case == "tampered":
        middle = len(values[2]) - 12
        values[2] = values[2][:middle] + ("A" if values[2][middle] != "A" else "B") + \
            values[2][middle + 1:]
    elif case == "another subject":
        hashes[2] = H1
        salts[2] = salts[0]
    elif case == "no salt":
        salts[2] = None
    else:
        hashes[2] = None
    expected = {"not a subject cell": FormatError, "tampered": DecryptionError,
                "another subject": DecryptionError, "no salt": UnknownKeyVersion,
                "NULL subject": FormatError}[case]
    with pytest.raises(expected, match=r"value [0-9] of its batch"):
        reencrypt_subject_many(values, hashes, salts, erased, ciphers, 2, PLACE)


def test_the_live_subject_function_excludes_erased_subjects_and_hides_its_key(spark,
                                                                            tmp_path):
    local = Lakehouse(databricks=False)
    catalog = f"r{uuid.uuid4().hex[:8]}"
    store = TableDekStore(spark, catalog, lakehouse=local)
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "tester")
    scope = f"{catalog}.crm"
    keyring.ensure_active(scope)
    subjects = SubjectStore(spark, local, catalog, "crypto")
    assert live_subject_function(spark, keyring, subjects, scope) is None  # none erased
    subjects.erase(scope, subjects.hash_of(keyring, scope, "7"), keyring.audit)
    name = live_subject_function(spark, keyring, subjects, scope)
    try:
        df = spark.createDataFrame([(1, "7"), (2, "8"), (3, None)], "id int, customer_id string")
        live = df.where(live_condition(name, "customer_id"))
        assert sorted(r["id"] for r in live.collect()) == [2, 3]
        plan = live._jdf.queryExecution().toString()
        id_key = subjects.id_key(keyring, scope).reveal()
        assert id_key.hex() not in plan and id_key.hex().upper() not in plan
    finally:
        drop_live_subject_function(spark, name)
