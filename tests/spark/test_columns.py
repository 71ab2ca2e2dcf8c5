"""DataFrame encryption on local Spark: types, NULLs, versions, strict/lenient, plans, and
byte compatibility with Spark's own aes_encrypt/aes_decrypt."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from envelope_encryption.cell import format as cell_format
from envelope_encryption.errors import ConfigError
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import (
    TableRef,
    decrypt_columns,
    encrypt_columns,
    reencrypt_columns,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "cell-format-vectors.json").read_text("utf-8")
)["vectors"]
SCHEMA = ("id int, name string, ssn string, age int, salary decimal(10,2), rate double, "
          "active boolean, birth date, seen timestamp, raw binary")
PII = ["name", "ssn", "age", "salary", "rate", "active", "birth", "seen", "raw"]


@pytest.fixture()
def keyring(spark, tmp_path):
    catalog = f"c{uuid.uuid4().hex[:8]}"
    store = TableDekStore(spark, catalog, lakehouse=Lakehouse(databricks=False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    ring = Keyring(store, kek, "tester")
    ring.ensure_active(f"{catalog}.hr")
    return ring


def _ref(keyring) -> TableRef:
    return TableRef(keyring.store.catalog, "hr", "people")


def _data(spark):
    rows = [
        (1, "Zoë Ångström 日本 🔐", "933-73-8723", 42, Decimal("12345.67"), 0.1, True,
         dt.date(1984, 2, 29), dt.datetime(2024, 3, 1, 12, 34, 56, 123456), b"\x00\xff"),
        (2, "", "", 0, Decimal("-1.00"), -1e300, False, dt.date(1, 1, 1),
         dt.datetime(1970, 1, 1), b""),
        (3, None, None, None, None, None, None, None, None, None),
    ]
    return spark.createDataFrame(rows, SCHEMA)


def test_round_trip_every_type(spark, keyring):
    df = _data(spark)
    encrypted = encrypt_columns(df, PII, keyring=keyring, table=_ref(keyring)).cache()
    assert all(encrypted.schema[c].dataType.simpleString() == "string" for c in PII)
    stored = encrypted.collect()
    assert stored[2]["ssn"] is None and stored[2]["name"] is None
    assert all(cell_format.is_cell(stored[0][c]) for c in PII)
    assert stored[0]["age"].startswith("ee1:1:int:")
    decrypted = decrypt_columns(encrypted, PII, keyring=keyring, table=_ref(keyring))
    assert_df_equality(decrypted, df, ignore_row_order=True)


def test_plaintext_key_never_in_plans(spark, keyring):
    df = _data(spark)
    encrypted = encrypt_columns(df, PII, keyring=keyring, table=_ref(keyring))
    decrypted = decrypt_columns(encrypted, PII, keyring=keyring, table=_ref(keyring),
                                types={c: df.schema[c].dataType.simpleString() for c in PII})
    key = keyring.dek(_ref(keyring).scope, 1).reveal()
    forms = {key.hex(), key.hex().upper(), base64.b64encode(key).decode(), repr(key)[2:-1]}
    for frame in (encrypted, decrypted):
        plans = frame._jdf.queryExecution().toString()
        plans += "".join(str(x) for x in (frame.schema, frame.columns))
        for form in forms:
            assert form not in plans


def test_cells_of_every_version_decrypt(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "one")], "id int, name string")
    v1 = encrypt_columns(df, ["name"], keyring=keyring, table=ref).collect()
    keyring.create_version(ref.scope)
    df2 = spark.createDataFrame([(2, "two")], "id int, name string")
    v2 = encrypt_columns(df2, ["name"], keyring=keyring, table=ref).collect()
    assert v1[0]["name"].startswith("ee1:1:") and v2[0]["name"].startswith("ee1:2:")
    both = spark.createDataFrame(v1 + v2, "id int, name string")
    out = decrypt_columns(both, ["name"], keyring=keyring, table=ref).orderBy("id").collect()
    assert [r["name"] for r in out] == ["one", "two"]


def test_strict_fails_and_lenient_nulls_moved_or_tampered_cells(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada", "933-73-8723")], "id int, name string, ssn string")
    enc = encrypt_columns(df, ["name", "ssn"], keyring=keyring, table=ref).collect()[0]
    good = enc["ssn"]
    tampered = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    rows = [(1, enc["name"]), (2, tampered), (3, good[:20]), (4, "933-73-8723"), (5, good)]
    frame = spark.createDataFrame(rows, "id int, ssn string")
    lenient = decrypt_columns(frame, ["ssn"], keyring=keyring, table=ref, strict=False)
    assert [r["ssn"] for r in lenient.orderBy("id").collect()] == [
        None, None, None, None, "933-73-8723"
    ]
    for bad_id in (1, 2, 3, 4):
        one = frame.where(F.col("id") == bad_id)
        with pytest.raises(Exception, match="column ssn") as raised:
            decrypt_columns(one, ["ssn"], keyring=keyring, table=ref,
                            types={"ssn": "string"}).collect()
        assert "933-73-8723" not in str(raised.value)


def test_other_table_or_scope_cannot_read(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada")], "id int, name string")
    enc = encrypt_columns(df, ["name"], keyring=keyring, table=ref).cache()
    other_table = TableRef(ref.catalog, ref.schema, "copy")
    out = decrypt_columns(enc, ["name"], keyring=keyring, table=other_table, strict=False)
    assert out.collect()[0]["name"] is None


def test_encrypting_twice_keeps_cells(spark, keyring, tmp_path):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada"), (2, None)], "id int, name string")
    path = str(tmp_path / "once")
    encrypt_columns(df, ["name"], keyring=keyring, table=ref).write.parquet(path)
    once = spark.read.parquet(path)
    twice = encrypt_columns(once, ["name"], keyring=keyring, table=ref)
    assert_df_equality(twice, once, ignore_row_order=True)


def test_reencrypt_moves_old_versions_to_active(spark, keyring, tmp_path):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada", 7)], "id int, name string, n int")
    path = str(tmp_path / "v1")
    encrypt_columns(df, ["name", "n"], keyring=keyring, table=ref).write.parquet(path)
    keyring.create_version(ref.scope)
    v1 = spark.read.parquet(path)
    moved = reencrypt_columns(v1, ["name", "n"], keyring=keyring, table=ref).collect()[0]
    assert moved["name"].startswith("ee1:2:string:") and moved["n"].startswith("ee1:2:int:")
    again = spark.createDataFrame([moved], v1.schema)
    assert_df_equality(
        decrypt_columns(again, ["name", "n"], keyring=keyring, table=ref), df
    )


def test_bad_columns_are_refused(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, [1, 2])], "id int, tags array<int>")
    with pytest.raises(ConfigError, match="not found"):
        encrypt_columns(df, ["nope"], keyring=keyring, table=ref)
    with pytest.raises(ConfigError, match="cannot be encrypted"):
        encrypt_columns(df, ["tags"], keyring=keyring, table=ref)
    with pytest.raises(ConfigError, match="invalid column"):
        encrypt_columns(df.withColumnRenamed("id", "a`b"), ["a`b"], keyring=keyring, table=ref)


@pytest.mark.parametrize("vector", VECTORS[:4], ids=[v["name"] for v in VECTORS[:4]])
def test_spark_aes_decrypt_reads_library_payloads(spark, vector):
    row = spark.sql(
        "SELECT CAST(aes_decrypt(unbase64(element_at(split(:cell, ':'), 4)), unhex(:key), "
        "'GCM', 'DEFAULT', concat(substring_index(:cell, ':', 3), ':', :place)) AS STRING) AS p",
        args={"cell": vector["cell"], "key": vector["key_hex"], "place": vector["place"]},
    ).first()
    assert row["p"] == vector["plaintext"]


@pytest.mark.parametrize("vector", VECTORS[:4], ids=[v["name"] for v in VECTORS[:4]])
def test_library_reads_spark_aes_encrypt_payloads(spark, vector):
    header = f"ee1:{vector['version']}:{vector['type']}:"
    row = spark.sql(
        "SELECT base64(aes_encrypt(:plain, unhex(:key), 'GCM', 'DEFAULT', unhex(:iv), :aad)) AS c",
        args={"plain": vector["plaintext"], "key": vector["key_hex"], "iv": vector["iv_hex"],
              "aad": header + vector["place"]},
    ).first()
    cell = header + row["c"]
    assert cell == vector["cell"]  # byte-identical to the library with the same IV
    random_iv = spark.sql(
        "SELECT base64(aes_encrypt(:plain, unhex(:key), 'GCM', 'DEFAULT', X'', :aad)) AS c",
        args={"plain": vector["plaintext"], "key": vector["key_hex"],
              "aad": header + vector["place"]},
    ).first()["c"]
    plain, _ = cell_format.decrypt_cell(
        header + random_iv, {vector["version"]: bytes.fromhex(vector["key_hex"])},
        vector["place"],
    )
    assert plain == vector["plaintext"]


ROW_VECTORS = [v for v in VECTORS if "row_key" in v]


def test_row_bound_columns_open_only_in_their_row(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada", 36), (2, "Alan", 41), (3, None, None)],
                               "id int, name string, age int")
    enc = encrypt_columns(df, ["name", "age"], keyring=keyring, table=ref, row_key="id").cache()
    rows = {r["id"]: r for r in enc.collect()}
    assert rows[1]["name"].startswith("ee1:1:string+row:")
    assert rows[1]["age"].startswith("ee1:1:int+row:") and rows[3]["name"] is None
    back = decrypt_columns(enc, ["name", "age"], keyring=keyring, table=ref, row_key="id")
    assert_df_equality(back, df, ignore_row_order=True)
    # Swap the cells of rows 1 and 2: same column, same key, and yet neither opens.
    swapped = spark.createDataFrame(
        [(1, rows[2]["name"]), (2, rows[1]["name"])], "id int, name string")
    lenient = decrypt_columns(swapped, ["name"], keyring=keyring, table=ref, row_key="id",
                              strict=False, types={"name": "string"})
    assert [r["name"] for r in lenient.collect()] == [None, None]
    with pytest.raises(Exception, match="column name"):
        decrypt_columns(swapped, ["name"], keyring=keyring, table=ref, row_key="id",
                        types={"name": "string"}).collect()
    # Without the row key a bound cell is refused; with it an unbound cell is.
    with pytest.raises(Exception, match="bound to its row"):
        decrypt_columns(enc, ["name"], keyring=keyring, table=ref).collect()
    unbound = encrypt_columns(df, ["name"], keyring=keyring, table=ref).cache()
    with pytest.raises(Exception, match="not bound to its row"):
        decrypt_columns(unbound, ["name"], keyring=keyring, table=ref, row_key="id").collect()
    # Encrypting a bound output again keeps its cells (a re-run), each in its own row.
    again = encrypt_columns(enc.drop("age"), ["name"], keyring=keyring, table=ref, row_key="id")
    assert_df_equality(again, enc.drop("age"), ignore_row_order=True)
    with pytest.raises(ConfigError, match="cannot itself be encrypted"):
        encrypt_columns(df, ["name", "id"], keyring=keyring, table=ref, row_key="id")
    with pytest.raises(ConfigError, match="row key column"):
        encrypt_columns(df.withColumn("when", F.current_timestamp()), ["name"],
                        keyring=keyring, table=ref, row_key="when")


def test_reencrypt_binds_rows_and_refuses_forged_current_cells(spark, keyring):
    ref = _ref(keyring)
    df = spark.createDataFrame([(1, "Ada"), (2, "Alan")], "id int, name string")
    v1 = encrypt_columns(df, ["name"], keyring=keyring, table=ref).cache()
    keyring.create_version(ref.scope)
    bound = reencrypt_columns(v1, ["name"], keyring=keyring, table=ref, row_key="id",
                              bind_unbound=True).cache()
    assert all(r["name"].startswith("ee1:2:string+row:") for r in bound.collect())
    assert_df_equality(decrypt_columns(bound, ["name"], keyring=keyring, table=ref,
                                       row_key="id"), df, ignore_row_order=True)
    forged = spark.createDataFrame(
        [(1, "ee1:2:string:" + base64.b64encode(bytes(40)).decode())], "id int, name string")
    with pytest.raises(Exception, match="does not authenticate"):
        reencrypt_columns(forged, ["name"], keyring=keyring, table=ref).collect()


def test_authentic_non_utf8_plaintext_strict_and_lenient(spark, keyring):
    ref = _ref(keyring)
    key = keyring.dek(ref.scope, 1).reveal()
    header = "ee1:1:string:"
    # What the SQL encrypt makes of CAST(X'FF' AS STRING): an authentic cell, not UTF-8.
    bad = header + spark.sql(
        "SELECT base64(aes_encrypt(CAST(X'FF' AS STRING), unhex(:key), 'GCM', 'DEFAULT', X'', "
        ":aad)) AS c", args={"key": key.hex(), "aad": header + ref.place("name")},
    ).first()["c"]
    good = encrypt_columns(spark.createDataFrame([(1, "Ada")], "id int, name string"),
                           ["name"], keyring=keyring, table=ref).first()["name"]
    frame = spark.createDataFrame([(1, good), (2, bad), (3, good)], "id int, name string")
    lenient = decrypt_columns(frame.repartition(1), ["name"], keyring=keyring, table=ref,
                              strict=False, types={"name": "string"})
    assert {r["id"]: r["name"] for r in lenient.collect()} == {1: "Ada", 2: None, 3: "Ada"}
    with pytest.raises(Exception, match="not valid UTF-8") as raised:
        decrypt_columns(frame, ["name"], keyring=keyring, table=ref,
                        types={"name": "string"}).collect()
    assert "UnicodeDecodeError" not in str(raised.value)


@pytest.mark.parametrize("vector", ROW_VECTORS, ids=[v["name"] for v in ROW_VECTORS])
def test_spark_aes_decrypt_reads_row_bound_cells(spark, vector):
    """The AAD the SQL layer must build for a row-bound cell (docs/cell-format.md)."""
    row = spark.sql(
        "SELECT CAST(aes_decrypt(unbase64(element_at(split(:cell, ':'), 4)), unhex(:key), "
        "'GCM', 'DEFAULT', concat(substring_index(:cell, ':', 3), ':', :place, '#', :col, '=', "
        "CAST(:row AS STRING))) AS STRING) AS p",
        args={"cell": vector["cell"], "key": vector["key_hex"], "place": vector["place"],
              "col": vector["row_key"]["column"], "row": vector["row_key"]["value"]},
    ).first()
    assert row["p"] == vector["plaintext"]
