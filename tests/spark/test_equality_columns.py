"""Deterministic cells and blind indexes on DataFrames, with domain keys from the keyring:
joins, GROUP BY and COUNT(DISTINCT) on encrypted columns give the plaintext's results."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pyspark.sql import functions as F

from envelope_encryption.cell.equality import BlindIndexer
from envelope_encryption.errors import ConfigError
from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.domains import EqualityDomains
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.equality_columns import (
    BlindIndex,
    add_blind_indexes,
    decrypt_deterministic_columns,
    domain_versions,
    encrypt_deterministic_columns,
)

SSNS = [f"{n % 70:03d}-{n % 11:02d}-{n:04d}" for n in range(140)]


@pytest.fixture()
def domains(spark, tmp_path) -> EqualityDomains:
    catalog = f"c{uuid.uuid4().hex[:8]}"
    store = TableDekStore(spark, catalog, lakehouse=Lakehouse(databricks=False))
    store.ensure()
    kek = LocalKekProvider(tmp_path / "kek.key")
    kek.ensure()
    found = EqualityDomains(Keyring(store, kek, "tester"), catalog)
    for domain in ("ssn", "tax_id"):
        found.ensure(domain)
    return found


def tables(spark):
    employees = spark.createDataFrame(
        [(i, SSNS[i], dt.date(1980, 1, 1) + dt.timedelta(days=i)) for i in range(100)],
        "id int, ssn string, born date")
    # Payroll holds every other employee's SSN, some twice, and SSNs of no employee.
    payroll = spark.createDataFrame(
        [(1000 + i, SSNS[i % 140]) for i in range(0, 140, 2)]
        + [(2000 + i, SSNS[i]) for i in range(0, 20)], "pay_id int, ssn string")
    return employees, payroll


def pairs(left, right, column: str) -> set:
    return {(r.id, r.pay_id) for r in left.join(right, column).select("id", "pay_id").collect()}


def test_joins_group_by_and_count_distinct_on_deterministic_cells(spark, domains):
    employees, payroll = tables(spark)
    enc_employees = encrypt_deterministic_columns(employees, {"ssn": "ssn"}, domains=domains)
    enc_payroll = encrypt_deterministic_columns(payroll, {"ssn": "ssn"}, domains=domains)
    assert enc_employees.where(~F.col("ssn").startswith("ed1:1:string:")).count() == 0
    expected = pairs(employees, payroll, "ssn")
    assert len(expected) == 70
    assert pairs(enc_employees, enc_payroll, "ssn") == expected
    for plain, cells in ((employees, enc_employees), (payroll, enc_payroll)):
        assert cells.select(F.countDistinct("ssn")).first()[0] == \
            plain.select(F.countDistinct("ssn")).first()[0]
    grouped = sorted(r["count"] for r in enc_payroll.groupBy("ssn").count().collect())
    assert grouped == sorted(r["count"] for r in payroll.groupBy("ssn").count().collect())
    # Members get the exact values back, in their type.
    opened = decrypt_deterministic_columns(enc_payroll, {"ssn": "ssn"}, domains=domains)
    assert sorted(opened.collect()) == sorted(payroll.collect())
    dates = encrypt_deterministic_columns(employees, {"born": "ssn"}, domains=domains)
    back = decrypt_deterministic_columns(dates, {"born": "ssn"}, domains=domains,
                                         types={"born": "date"})
    assert sorted(back.collect()) == sorted(employees.collect())
    # A re-run over its own output keeps the cells.
    again = encrypt_deterministic_columns(enc_payroll, {"ssn": "ssn"}, domains=domains)
    assert sorted(again.collect()) == sorted(enc_payroll.collect())


def test_domains_keep_equal_values_apart(spark, domains):
    employees, _ = tables(spark)
    in_ssn = encrypt_deterministic_columns(employees, {"ssn": "ssn"}, domains=domains)
    in_tax = encrypt_deterministic_columns(employees, {"ssn": "tax_id"}, domains=domains)
    assert in_ssn.join(in_tax, "ssn").count() == 0
    with pytest.raises(Exception, match=r"column ssn: deterministic cell .* domain tax_id"):
        decrypt_deterministic_columns(in_ssn, {"ssn": "tax_id"}, domains=domains).collect()
    lenient = decrypt_deterministic_columns(in_ssn, {"ssn": "tax_id"}, domains=domains,
                                            strict=False)
    assert lenient.where(F.col("ssn").isNotNull()).count() == 0


def test_tampered_moved_and_foreign_cells_never_give_plaintext(spark, domains):
    employees, _ = tables(spark)
    cells = encrypt_deterministic_columns(employees.limit(3), {"ssn": "ssn"},
                                          domains=domains).collect()
    first = cells[0].ssn
    flipped = first[:-6] + ("A" if first[-6] != "A" else "B") + first[-5:]
    values = [flipped, "ed1:1:date:" + first[len("ed1:1:string:"):], "ee1:1:string:" +
              first[len("ed1:1:string:"):], "ed1:7:string:" + first[len("ed1:1:string:"):],
              "123-45-6789", cells[1].ssn]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "id int, ssn string")
    lenient = decrypt_deterministic_columns(df, {"ssn": "ssn"}, domains=domains, strict=False)
    assert [r.ssn for r in lenient.orderBy("id").collect()] == [None] * 5 + [SSNS[1]]
    for value in values[:5]:
        one = spark.createDataFrame([(value,)], "ssn string")
        with pytest.raises(Exception, match="column ssn"):
            decrypt_deterministic_columns(one, {"ssn": "ssn"}, domains=domains).collect()


def test_blind_indexes_join_look_up_and_truncate(spark, domains):
    employees, payroll = tables(spark)
    exact = [BlindIndex("ssn", "ssn", bits=64, normal_form="digits")]
    left = add_blind_indexes(employees, exact, domains=domains)
    right = add_blind_indexes(payroll, exact, domains=domains)
    assert left.columns == ["id", "ssn", "born", "ssn_bidx"]
    expected = pairs(employees, payroll, "ssn")
    assert {(r.id, r.pay_id) for r in left.drop("ssn").join(right.drop("ssn"), "ssn_bidx")
            .collect()} == expected
    # A lookup by literal: the index of the value sought, in another spelling (digits form).
    wanted = BlindIndexer(domains.active("ssn"), 64, "digits").index(
        SSNS[42].replace("-", " "))
    assert [r.id for r in left.where(F.col("ssn_bidx") == wanted).collect()] == [42]
    # 8 bits: at most 256 buckets, so distinct values share indexes (less equality leaks).
    coarse = add_blind_indexes(payroll, [BlindIndex("ssn", "ssn", bits=8, index_column="b8")],
                               domains=domains)
    assert coarse.select(F.countDistinct("b8")).first()[0] <= 256
    assert coarse.where(~F.col("b8").rlike("^bi1:1:[0-9a-f]{2}$")).count() == 0
    with pytest.raises(ConfigError, match="already exist"):
        add_blind_indexes(left, exact, domains=domains)
    with pytest.raises(ConfigError, match="multiple of 8"):
        BlindIndex("ssn", "ssn", bits=20)


def test_rotation_changes_cells_keeps_old_ones_readable_and_shows_versions(spark, domains):
    employees, payroll = tables(spark)
    old_side = encrypt_deterministic_columns(employees, {"ssn": "ssn"}, domains=domains)
    assert domains.rotate("ssn") == 2
    new_side = encrypt_deterministic_columns(payroll, {"ssn": "ssn"}, domains=domains)
    # Across versions nothing matches: the versions tell why before anyone joins.
    assert pairs(old_side, new_side, "ssn") == set()
    assert domain_versions(old_side, "ssn") == {1: 100}
    assert domain_versions(new_side, "ssn") == {2: payroll.count()}
    # Re-encrypting the old side under version 2 brings the join back.
    opened = decrypt_deterministic_columns(old_side, {"ssn": "ssn"}, domains=domains)
    rewritten = encrypt_deterministic_columns(opened, {"ssn": "ssn"}, domains=domains)
    assert domain_versions(rewritten, "ssn") == {2: 100}
    assert pairs(rewritten, new_side, "ssn") == pairs(employees, payroll, "ssn")


def test_domain_keys_stay_out_of_plans_and_reprs(spark, domains):
    employees, _ = tables(spark)
    keyring = domains.keyring
    raw = keyring.dek(domains.scope("ssn"), 1).reveal().hex()
    derived = domains.active("ssn")
    secrets = {raw, derived.enc.reveal().hex(), derived.iv.reveal().hex(),
               derived.index.reveal().hex()}
    df = add_blind_indexes(encrypt_deterministic_columns(
        employees, {"born": "ssn"}, domains=domains), [BlindIndex("ssn", "ssn")],
        domains=domains)
    shown = df._jdf.queryExecution().toString() + repr(derived) + repr(domains.readable("ssn"))
    assert not any(secret in shown or secret.upper() in shown for secret in secrets)
    assert domains.scope("ssn").endswith(".$equality.ssn")
    with pytest.raises(ConfigError):
        domains.scope("bad.name")


def test_randomized_readers_refuse_deterministic_cells(spark, domains):
    """An ed1 cell where ee1 cells are read gives NULL (lenient) or an error, never text."""
    from envelope_encryption.spark.columns import TableRef, decrypt_columns

    employees, _ = tables(spark)
    domains.keyring.ensure_active(f"{domains.catalog}.hr")
    cells = encrypt_deterministic_columns(employees.limit(5), {"ssn": "ssn"}, domains=domains)
    ref = TableRef(domains.catalog, "hr", "people")
    lenient = decrypt_columns(cells, ["ssn"], keyring=domains.keyring, table=ref,
                              types={"ssn": "string"}, strict=False)
    assert lenient.where(F.col("ssn").isNotNull()).count() == 0
    with pytest.raises(Exception, match="column ssn"):
        decrypt_columns(cells, ["ssn"], keyring=domains.keyring, table=ref,
                        types={"ssn": "string"}).collect()
