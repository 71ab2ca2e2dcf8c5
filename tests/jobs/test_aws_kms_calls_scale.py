"""Calls to KMS scale with DEK versions, not rows.

The moto server counts every KMS request it handles (``count_kms_requests`` patches its
KMS request handler in-process), while the real Spark layer encrypts and decrypts a table
of many rows under two DEK versions. A new keyring (``restarted``) stands for a new process
(a new job run): each run unwraps each version it touches exactly once.
"""

from __future__ import annotations

import uuid

from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
from tests.support.keyrings import restarted
from tests.support.kms_strict import count_kms_requests

ROWS = 20_000


def _check(plain) -> tuple[int, int]:
    row = plain.selectExpr(
        "count(*) AS n", "sum(CAST(name = concat('person-', id) AS INT)) AS ok"
    ).first()
    return row["n"], row["ok"]


def test_one_unwrap_per_dek_version_per_process(spark, make_kms_provider, tmp_path):
    catalog = f"kms_{uuid.uuid4().hex[:10]}"
    store = TableDekStore(spark, catalog)
    store.ensure()
    keyring = Keyring(store, make_kms_provider(catalog=catalog), actor="tests")
    keyring.kek.ensure()
    table = TableRef(catalog, "pii", "people")
    keyring.ensure_active(table.scope)
    keyring = restarted(keyring)  # a new job run: nothing unwrapped yet

    source = spark.range(ROWS).selectExpr("id", "concat('person-', id) AS name")
    first, second = source.where(f"id < {ROWS // 2}"), source.where(f"id >= {ROWS // 2}")
    path = str(tmp_path / "people")

    with count_kms_requests() as calls:
        part1 = encrypt_columns(first, ["name"], keyring=keyring, table=table)
        keyring.create_version(table.scope)  # DEK v2 (from GenerateDataKey, cached)
        part2 = encrypt_columns(second, ["name"], keyring=keyring, table=table)
        part1.unionByName(part2).write.parquet(path)
    # DEK v1 and the keyring's integrity key are unwrapped once; the configured key's ARN is
    # resolved once per process and checked again before the new DEK is generated.
    assert dict(calls) == {"Decrypt": 2, "DescribeKey": 2, "GenerateDataKey": 1}

    encrypted = spark.read.parquet(path)
    per_version = {
        r["v"]: r["n"]
        for r in encrypted.selectExpr("split(name, ':')[1] AS v").groupBy("v").count()
        .withColumnRenamed("count", "n").collect()
    }
    assert per_version == {"1": ROWS // 2, "2": ROWS // 2}

    keyring = restarted(keyring)  # another job run reads the whole table
    with count_kms_requests() as calls:
        assert _check(decrypt_columns(encrypted, ["name"], keyring=keyring, table=table)) == (
            ROWS, ROWS)
        # More queries in the same process: no more calls.
        assert _check(decrypt_columns(encrypted, ["name"], keyring=keyring, table=table)) == (
            ROWS, ROWS)
    # Two versions and the integrity key, 20,000 rows; one DescribeKey per process.
    assert dict(calls) == {"Decrypt": 3, "DescribeKey": 1}
