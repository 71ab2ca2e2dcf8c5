"""Per-subject keys on local Spark: many subjects encrypted, one erased, every other one still
decrypts exactly; strict and lenient reads of the erased one; the audit trail; no key in plans."""

from __future__ import annotations

import uuid

import pytest
from pyspark.sql import functions as F

from envelope_encryption.cell.subject import SubjectErased, is_subject_cell
from envelope_encryption.errors import ConfigError, UnknownKeyVersion
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.audit import TableAuditLog
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.subject_columns import (
    decrypt_subject_columns,
    encrypt_subject_columns,
)

LOCAL = Lakehouse(databricks=False)
SUBJECTS = 200
ROWS = 1_000  # five rows per subject
ROW = "id long, customer_id string, name string"


@pytest.fixture()
def setup(spark, tmp_path):
    catalog = f"s{uuid.uuid4().hex[:8]}"
    store = TableDekStore(spark, catalog, lakehouse=LOCAL)
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    audit = TableAuditLog(spark, LOCAL, catalog, "crypto", "key_audit", "tester")
    ring = Keyring(store, kek, "tester", audit=audit)
    table = TableRef(catalog, "crm", "orders")
    ring.ensure_active(table.scope)
    return ring, table, SubjectStore(spark, LOCAL, catalog, "crypto"), audit


def _orders(spark):
    return spark.range(ROWS).selectExpr(
        "id", f"id % {SUBJECTS} AS customer_id", "concat('name-', id) AS name",
        "CAST(id * 3 AS INT) AS amount")


def test_erase_one_subject_every_other_still_decrypts(spark, setup, tmp_path):
    keyring, table, subjects, audit = setup
    source = _orders(spark)
    path = str(tmp_path / "orders")
    encrypt_subject_columns(source, ["name", "amount"], keyring=keyring, table=table,
                            subject_column="customer_id", subjects=subjects).write.parquet(path)
    stored = spark.read.parquet(path)
    first = stored.orderBy("id").first()
    assert is_subject_cell(first["name"]) and first["amount"].startswith("ee1:1:int+subj:")

    def read(strict=True):
        return decrypt_subject_columns(spark.read.parquet(path), ["name", "amount"],
                                       keyring=keyring, table=table,
                                       subject_column="customer_id", subjects=subjects,
                                       strict=strict)

    expected = sorted(tuple(r) for r in source.collect())
    assert sorted(tuple(r) for r in read().collect()) == expected

    erased = subjects.hash_of(keyring, table.scope, "7")
    assert subjects.erase(table.scope, erased, keyring.audit) == "salt removed"
    assert subjects.erase(table.scope, erased, keyring.audit) == "already erased: no change"

    lenient = read(strict=False).collect()
    for row in lenient:
        if row["customer_id"] == 7:
            assert row["name"] is None and row["amount"] is None
        else:
            assert (row["name"], row["amount"]) == (f"name-{row['id']}", row["id"] * 3)
    assert sum(r["name"] is None for r in lenient) == ROWS // SUBJECTS
    with pytest.raises(Exception, match=f"SubjectErased.*subject {erased} was erased"):
        read().collect()
    # Every other subject reads exactly, strictly.
    others = read().where("customer_id <> 7")
    assert sorted(tuple(r) for r in others.collect()) == [
        r for r in expected if r[1] != 7]

    salt_rows = spark.table(subjects.table).where(F.col("subject_hash") == erased).collect()
    assert len(salt_rows) == 1 and salt_rows[0]["salt"] is None
    assert salt_rows[0]["erased_at"] is not None
    assert spark.table(subjects.table).where("salt IS NOT NULL").count() == SUBJECTS - 1

    events = [e for e in audit.events() if e["operation"].startswith("subject_")]
    assert [(e["operation"], e["outcome"]) for e in events] == [
        ("subject_salts_created", "ok"), ("subject_erased", "ok"), ("subject_erased", "ok")]
    assert events[0]["detail"] == f"{SUBJECTS} new subject salt(s)"
    assert events[1]["detail"] == f"subject {erased}: salt removed"
    assert all("customer" not in e["detail"] for e in events)


def test_erased_subject_is_not_written_again(spark, setup):
    keyring, table, subjects, _ = setup
    subjects.erase(table.scope, subjects.hash_of(keyring, table.scope, "3"), keyring.audit)
    df = spark.createDataFrame([(1, 3, "x"), (2, 4, "y")], "id long, customer_id int, name string")
    # Refused before anything is written: no salt is created for subject 4 either.
    with pytest.raises(SubjectErased, match=r"1 input row\(s\) belong to erased subjects"):
        encrypt_subject_columns(df, ["name"], keyring=keyring, table=table,
                                subject_column="customer_id", subjects=subjects).collect()
    assert spark.table(subjects.table).count() == 1  # the tombstone only


def test_rerun_keeps_cells_and_moved_cells_do_not_open(spark, setup, tmp_path):
    keyring, table, subjects, _ = setup
    df = spark.createDataFrame([(1, "a", "x"), (2, "b", "y")], ROW)
    encrypt_subject_columns(df, ["name"], keyring=keyring, table=table,
                            subject_column="customer_id", subjects=subjects
                            ).write.parquet(str(tmp_path / "once"))
    once = spark.read.parquet(str(tmp_path / "once"))
    cells = {r["id"]: r["name"] for r in once.collect()}
    twice = encrypt_subject_columns(once, ["name"], keyring=keyring, table=table,
                                    subject_column="customer_id", subjects=subjects)
    assert {r["id"]: r["name"] for r in twice.collect()} == cells
    # Subject a's cell put in subject b's row: b's key does not open it.
    swapped = spark.createDataFrame([(1, "b", cells[1])], ROW)
    out = decrypt_subject_columns(swapped, ["name"], keyring=keyring, table=table,
                                  subject_column="customer_id", subjects=subjects, strict=False)
    assert out.first()["name"] is None
    with pytest.raises(Exception, match="does not authenticate"):
        decrypt_subject_columns(swapped, ["name"], keyring=keyring, table=table,
                                subject_column="customer_id", subjects=subjects).collect()


def test_keys_never_in_plans_and_bad_subject_columns(spark, setup):
    keyring, table, subjects, _ = setup
    df = spark.createDataFrame([(1, "a", "x")], ROW)
    encrypted = encrypt_subject_columns(df, ["name"], keyring=keyring, table=table,
                                        subject_column="customer_id", subjects=subjects)
    decrypted = decrypt_subject_columns(encrypted, ["name"], keyring=keyring, table=table,
                                        subject_column="customer_id", subjects=subjects)
    plans = []
    for frame in (encrypted, decrypted):
        frame._jdf.queryExecution().toString()
        plans.append(frame._jdf.queryExecution().toString())
    dek = keyring.active_dek(table.scope)[1].reveal()
    id_key = subjects.id_key(keyring, table.scope).reveal()
    for plan in plans:
        for secret in (dek, id_key):
            assert secret.hex() not in plan and secret.hex().upper() not in plan
    with pytest.raises(ConfigError, match="cannot itself be encrypted"):
        encrypt_subject_columns(df, ["customer_id"], keyring=keyring, table=table,
                                subject_column="customer_id", subjects=subjects)
    with pytest.raises(ConfigError, match="not found"):
        encrypt_subject_columns(df, ["name"], keyring=keyring, table=table,
                                subject_column="tenant", subjects=subjects)
    nulls = spark.createDataFrame([(1, None, "x")], ROW)
    with pytest.raises(Exception, match="subject is NULL"):
        encrypt_subject_columns(nulls, ["name"], keyring=keyring, table=table,
                                subject_column="customer_id", subjects=subjects).collect()
    assert issubclass(SubjectErased, UnknownKeyVersion)


def test_two_writers_of_the_same_subjects_end_with_one_salt_each(spark, setup):
    import threading

    keyring, table, subjects, _ = setup
    id_key = subjects.id_key(keyring, table.scope).reveal()
    from envelope_encryption.cell.subject import subject_hash

    hashes = spark.createDataFrame([(subject_hash(id_key, str(i)),) for i in range(300)],
                                   "subject_hash string")
    created, errors = [], []

    def writer(part):
        try:
            created.append(subjects.ensure_salts(table.scope, part, keyring.audit))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(hashes.limit(limit),))
               for limit in (300, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(created) in ([0, 300], [100, 200])
    rows = spark.table(subjects.table).groupBy("subject_hash").count()
    assert rows.count() == 300 and rows.where("count > 1").count() == 0
