"""Calls to KMS scale with DEK versions, not rows.

The moto server counts every KMS request it handles (``count_kms_requests`` patches its
KMS request handler in-process), while the real Spark layer encrypts and decrypts a table
of many rows under two DEK versions. ``clear_dek_cache()`` stands for a new process (a new
job run): each run unwraps each version it touches exactly once.
"""

from __future__ import annotations

import uuid

from envelope_encryption.keyring import Keyring, clear_dek_cache
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
from tests.support.kms_strict import count_kms_requests

ROWS = 20_000


def test_one_unwrap_per_dek_version_per_process(spark, make_provider):
    catalog = f"kms_{uuid.uuid4().hex[:10]}"
    store = TableDekStore(spark, catalog)
    store.ensure()
    keyring = Keyring(store, make_provider(catalog=catalog), actor="tests")
    keyring.kek.ensure()
    table = TableRef(catalog, "pii", "people")
    keyring.ensure_active(table.scope)
    clear_dek_cache()  # a new job run: nothing unwrapped yet

    source = spark.range(ROWS).selectExpr("id", "concat('person-', id) AS name")
    first, second = source.where(f"id < {ROWS // 2}"), source.where(f"id >= {ROWS // 2}")

    with count_kms_requests() as calls:
        part1 = encrypt_columns(first, ["name"], keyring=keyring, table=table).collect()
        keyring.create_version(table.scope)  # DEK v2 (from GenerateDataKey, cached)
        part2 = encrypt_columns(second, ["name"], keyring=keyring, table=table).collect()
    assert dict(calls) == {"Decrypt": 1, "GenerateDataKey": 1}
    assert {r["name"].split(":")[1] for r in part1} == {"1"}
    assert {r["name"].split(":")[1] for r in part2} == {"2"}

    encrypted = spark.createDataFrame(part1 + part2, "id BIGINT, name STRING")
    clear_dek_cache()  # another job run reads the whole table
    with count_kms_requests() as calls:
        plain = decrypt_columns(encrypted, ["name"], keyring=keyring, table=table)
        assert plain.count() == ROWS
        assert plain.where("name != concat('person-', id)").count() == 0
        # More queries in the same process: no more calls.
        decrypt_columns(encrypted, ["name"], keyring=keyring, table=table).collect()
    assert dict(calls) == {"Decrypt": 2}  # two versions, 20,000 rows
