"""Spark's own functions open deterministic cells and compute blind-index digests, so
members can decrypt them in SQL and joins run on them as on any STRING."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envelope_encryption.cell.equality import BlindIndexer, DeterministicSealer, DomainKeys
from envelope_encryption.secret import SecretKey

VECTORS = json.loads(
    (Path(__file__).parents[2] / "docs" / "equality-vectors.json").read_text("utf-8"))


@pytest.mark.parametrize("vector", VECTORS["deterministic"],
                         ids=[v["name"] for v in VECTORS["deterministic"]])
def test_spark_aes_decrypt_opens_deterministic_cells(spark, vector):
    row = spark.sql(
        "SELECT CAST(aes_decrypt(unbase64(element_at(split(:cell, ':'), 4)), unhex(:key), "
        "'GCM', 'DEFAULT', concat(substring_index(:cell, ':', 3), ':domain=', :domain)) "
        "AS STRING) AS p",
        args={"cell": vector["cell"], "key": vector["enc_key_hex"],
              "domain": vector["domain"]},
    ).first()
    assert row["p"] == vector["plaintext"]


def test_join_and_count_distinct_on_cells_match_plaintext(spark):
    keys = DomainKeys.derive("ssn", 1, SecretKey(bytes(range(32))))
    sealer, indexer = DeterministicSealer(keys), BlindIndexer(keys, 32, "digits")
    employees = [(n, f"{n % 50:03d}-00-{n:04d}") for n in range(200)]
    payroll = [(n, f"{n % 50:03d}-00-{n:04d}") for n in range(100, 300, 2)]

    def frame(rows):
        return spark.createDataFrame(
            [(i, ssn, sealer.seal(ssn, "string"), indexer.index(ssn)) for i, ssn in rows],
            "id int, ssn string, ssn_det string, ssn_bidx string")

    left, right = frame(employees), frame(payroll)
    left.createOrReplaceTempView("eq_employees")
    right.createOrReplaceTempView("eq_payroll")

    def pairs(column: str) -> set:
        return {(r.a, r.b) for r in spark.sql(
            f"SELECT e.id AS a, p.id AS b FROM eq_employees e JOIN eq_payroll p "
            f"ON e.{column} = p.{column}").collect()}

    expected = pairs("ssn")
    assert len(expected) == 50
    assert pairs("ssn_det") == expected
    # 32-bit index over 300 values: false positives are possible in principle, so the pairs
    # are checked against the plaintext join rather than assumed equal.
    assert pairs("ssn_bidx") >= expected
    counts = spark.sql(
        "SELECT count(DISTINCT ssn) AS p, count(DISTINCT ssn_det) AS d, "
        "count(DISTINCT ssn_bidx) AS i FROM eq_employees").first()
    assert counts.p == counts.d == 200 and counts.i <= 200
