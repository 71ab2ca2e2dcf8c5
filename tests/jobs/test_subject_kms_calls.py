"""Calls to KMS with per-subject keys scale with DEK versions, not with subjects.

Many subjects are encrypted and decrypted through the real Spark layer against the moto
server, which counts every KMS request: each process (a new keyring) unwraps each DEK
version it touches and the keyring's integrity key once, however many subjects it reads."""

from __future__ import annotations

import uuid

from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.subjects import SubjectStore
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import TableRef
from envelope_encryption.spark.subject_columns import (
    decrypt_subject_columns,
    encrypt_subject_columns,
)
from tests.support.keyrings import restarted
from tests.support.kms_strict import count_kms_requests

SUBJECTS = 2_000
ROWS = 6_000


def test_one_unwrap_per_dek_version_however_many_subjects(spark, make_kms_provider, tmp_path):
    catalog = f"ks{uuid.uuid4().hex[:10]}"
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, catalog, lakehouse=lakehouse)
    store.ensure()
    keyring = Keyring(store, make_kms_provider(catalog=catalog), actor="tests")
    keyring.kek.ensure()
    table = TableRef(catalog, "crm", "orders")
    keyring.ensure_active(table.scope)
    subjects = SubjectStore(spark, lakehouse, catalog, "crypto")
    source = spark.range(ROWS).selectExpr("id", f"id % {SUBJECTS} AS customer_id",
                                          "concat('person-', id) AS name")
    path = str(tmp_path / "orders")

    keyring = restarted(keyring)  # a new job run: nothing unwrapped yet
    with count_kms_requests() as calls:
        encrypt_subject_columns(source, ["name"], keyring=keyring, table=table,
                                subject_column="customer_id", subjects=subjects
                                ).write.parquet(path)
    # DEK v1 and the integrity key (the subject-id key derives from it): 2,000 subjects.
    assert calls["Decrypt"] == 2

    keyring = restarted(keyring)
    with count_kms_requests() as calls:
        out = decrypt_subject_columns(spark.read.parquet(path), ["name"], keyring=keyring,
                                      table=table, subject_column="customer_id",
                                      subjects=subjects)
        row = out.selectExpr("count(*) AS n",
                             "sum(CAST(name = concat('person-', id) AS INT)) AS ok").first()
    assert (row["n"], row["ok"]) == (ROWS, ROWS)
    assert calls["Decrypt"] == 2
