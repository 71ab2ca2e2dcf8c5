"""encrypt_columns with deterministic and blind-index columns (docs/equality.md, "Jobs").

Two targets in two schemas share equality domains: joins on their deterministic cells and on
their blind indexes give the plaintext join's pairs; the cells decrypt to the input; re-runs
add nothing; bad parameters are refused before anything is written; the columns are
registered under the domains' scopes, and each domain key's creation is audited. Local
Spark and the local back end, and once AWS KMS on moto.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.identifiers import domain_scope
from envelope_encryption.jobs import encrypt_columns, kek_setup, table_registry
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_equality import EqualityColumns
from envelope_encryption.jobs.usage_limits import usage_ledger
from envelope_encryption.keyring.domains import EqualityDomains
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from envelope_encryption.spark.columns import encrypt_columns as encrypt_df
from envelope_encryption.spark.equality_columns import decrypt_deterministic_columns
from envelope_encryption.spark.sql.local_masks import local_masked_columns
from tests.support.kms_strict import count_kms_requests

DOMAINS = "ssn:digits:64,email"
# hr.staff: the people; finance.payroll: some of them, SSNs written with spaces, one e-mail
# in another case (not equal: e-mail cells are deterministic on the exact value).
STAFF = [(i, f"name-{i}", f"{100 + i}-45-{6000 + i}", f"person{i}@example.com")
         for i in range(1, 7)] + [(7, "name-7", None, None)]
PAYROLL = [(100 + i, f"{100 + i} 45 {6000 + i}", f"person{i}@example.com", 10.0 * i)
           for i in range(2, 6)] + [
    (106, "999 99 9999", "Person6@Example.com", 60.0), (107, None, None, 70.0)]


@pytest.fixture()
def settings(tmp_path):
    return Settings(catalog=f"q{uuid.uuid4().hex[:8]}", schemas=("hr", "finance"),
                    options={"local-kek-file": str(tmp_path / "kek.key")})


def _source(settings, spark, schema: str, table: str, rows: list, ddl: str) -> str:
    ctx = build_context(settings, spark)
    ctx.lakehouse.ensure_schema(spark, settings.catalog, schema, "input of the test")
    name = ctx.lakehouse.table(settings.catalog, schema, table)
    spark.createDataFrame(rows, ddl).write.saveAsTable(name.replace("`", ""))
    return f"{schema}.{table}"


def _staff(settings, spark, **kw):
    given = {"equality_domains": DOMAINS, "deterministic_columns": "email=email",
             "blind_index_columns": "ssn=ssn", **kw}
    return encrypt_columns.run(
        settings, spark, source="hr.staff_in", source_format="table",
        target_table="hr.staff", columns=["name", "ssn"], id_column="id", **given)


def _payroll(settings, spark, **kw):
    return encrypt_columns.run(
        settings, spark, source="finance.payroll_in", source_format="table",
        target_table="finance.payroll", columns=["ssn"], id_column="id",
        equality_domains=DOMAINS, deterministic_columns="email=email",
        blind_index_columns="ssn=ssn", **kw)


def _both_sources(settings, spark) -> None:
    kek_setup.run(settings, spark)
    _source(settings, spark, "hr", "staff_in", STAFF,
            "id int, name string, ssn string, email string")
    _source(settings, spark, "finance", "payroll_in", PAYROLL,
            "id int, ssn string, email string, amount double")


def _stored(settings, spark, schema: str, table: str):
    ctx = build_context(settings, spark)
    return spark.table(ctx.lakehouse.storage_table(spark, settings.catalog, schema, table))


def _pairs(left, right, left_column: str, right_column: str) -> set[tuple[int, int]]:
    joined = left.alias("l").join(right.alias("r"),
                                  left[left_column] == right[right_column])
    return {(r[0], r[1]) for r in joined.select("l.id", "r.id").collect()}


def _digits(value: str | None) -> str | None:
    return None if value is None else re.sub(r"\D", "", value)


def test_two_schemas_in_one_domain_join_on_cells_and_indexes_as_on_plaintext(settings, spark):
    _both_sources(settings, spark)
    staff_report = _staff(settings, spark)
    payroll_report = _payroll(settings, spark)
    assert (staff_report.rows_written, payroll_report.rows_written) == (7, 6)
    assert "deterministic email (email)" in str(staff_report)
    assert "blind indexes ssn_bidx (ssn)" in str(staff_report)

    staff, payroll = _stored(settings, spark, "hr", "staff"), _stored(settings, spark,
                                                                      "finance", "payroll")
    assert staff.columns == ["id", "name", "ssn", "email", "ssn_bidx"]
    cells = {r["id"]: r for r in staff.collect()}
    assert cells[1]["email"].startswith("ed1:1:string:")
    assert cells[1]["ssn"].startswith("ee1:") and cells[1]["ssn_bidx"].startswith("bi1:1:")
    assert len(cells[1]["ssn_bidx"]) == len("bi1:1:") + 16  # 64 bits
    assert (cells[7]["email"], cells[7]["ssn"], cells[7]["ssn_bidx"]) == (None, None, None)

    # The joins on encrypted columns pair the same rows as the joins on plaintext.
    expected_email = {(s[0], p[0]) for s in STAFF for p in PAYROLL
                      if s[3] is not None and s[3] == p[2]}
    expected_ssn = {(s[0], p[0]) for s in STAFF for p in PAYROLL
                    if s[2] is not None and _digits(s[2]) == _digits(p[1])}
    assert expected_email == {(i, 100 + i) for i in range(2, 6)}
    assert expected_ssn == {(i, 100 + i) for i in range(2, 6)}
    assert _pairs(staff, payroll, "email", "email") == expected_email
    assert _pairs(staff, payroll, "ssn_bidx", "ssn_bidx") == expected_ssn
    # ... and COUNT(DISTINCT) over both tables counts the distinct plaintexts.
    emails = staff.select("email").union(payroll.select("email")).distinct().dropna()
    assert emails.count() == len({s[3] for s in STAFF if s[3]} | {p[2] for p in PAYROLL if p[2]})

    # The cells decrypt to the input: deterministic ones with the domain's key, the
    # randomized ones with each schema's DEK.
    ctx = build_context(settings, spark)
    domains = EqualityDomains(ctx.keyring, settings.catalog)
    plain = decrypt_deterministic_columns(staff, {"email": "email"}, domains=domains)
    plain = decrypt_columns(plain, ["name", "ssn"], keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "staff"))
    assert sorted((r["id"], r["name"], r["ssn"], r["email"]) for r in plain.collect()) == STAFF
    paid = decrypt_deterministic_columns(payroll, {"email": "email"}, domains=domains)
    assert sorted((r["id"], r["email"]) for r in paid.collect()) == sorted(
        (p[0], p[2]) for p in PAYROLL)

    # Re-runs add nothing: no row, no key, no registry row, no usage count.
    registry = table_registry.table_registry(ctx)
    entries = len(registry.entries(include_inactive=True))
    usage_before = usage_ledger(ctx).totals()
    assert (_staff(settings, spark).rows_written, _payroll(settings, spark).rows_written) \
        == (0, 0)
    assert _stored(settings, spark, "hr", "staff").count() == 7
    assert len(registry.entries(include_inactive=True)) == entries
    assert usage_ledger(ctx).totals() == usage_before
    for name in ("email", "ssn"):
        assert [r.version for r in ctx.keyring.versions(domain_scope(settings.catalog,
                                                                     name))] == [1]

    # The registry: deterministic and index columns under their domains' scopes, the
    # randomized ones under their schemas'.
    email_scope = domain_scope(settings.catalog, "email")
    ssn_scope = domain_scope(settings.catalog, "ssn")
    listed = {(e.scope, e.table_name.split(".", 1)[1], e.column_name)
              for e in registry.entries()}
    assert listed == {
        (f"{settings.catalog}.hr", "hr.staff", "name"), (f"{settings.catalog}.hr", "hr.staff",
                                                         "ssn"),
        (f"{settings.catalog}.finance", "finance.payroll", "ssn"),
        (email_scope, "hr.staff", "email"), (email_scope, "finance.payroll", "email"),
        (ssn_scope, "hr.staff", "ssn_bidx"), (ssn_scope, "finance.payroll", "ssn_bidx")}
    assert registry.tables(email_scope) == [f"{settings.catalog}.finance.payroll",
                                            f"{settings.catalog}.hr.staff"]
    by_domain = table_registry.run(settings, spark, domain="ssn")
    assert {e.column_name for e in by_domain} == {"ssn_bidx"}

    # Each domain key was created once, by the first run, and audited as a DEK creation.
    created = [(e["scope"], e["key_version"], e["outcome"]) for e in ctx.keyring.audit.events()
               if e["operation"] == "dek_created" and "$equality" in e["scope"]]
    assert sorted(created) == [(email_scope, 1, "ok"), (ssn_scope, 1, "ok")]

    # Deterministic encryptions are counted per domain version, as DEK encryptions are:
    # 6 + 5 non-NULL e-mails; blind indexes wear no key and are not counted.
    totals = usage_ledger(ctx).totals()
    assert totals[(email_scope, 1)] == 11
    assert (ssn_scope, 1) not in totals
    assert totals[(f"{settings.catalog}.hr", 1)] == 7 + 6  # name and ssn of hr.staff


def test_a_file_source_writes_the_cells_and_indexes_of_the_domain(settings, spark, tmp_path):
    _both_sources(settings, spark)
    _payroll(settings, spark)
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"

    def land(name: str, rows: list[tuple[int, str, str]]) -> None:
        landing.mkdir(parents=True, exist_ok=True)
        lines = ["id,ssn,email"] + [f"{i},{s},{e}" for i, s, e in rows]
        (landing / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def run():
        return encrypt_columns.run(
            settings, spark, source=str(landing), source_format="csv",
            target_table="hr.people", columns=["ssn"], checkpoint_location=str(checkpoint),
            equality_domains=DOMAINS, deterministic_columns="email=email",
            blind_index_columns="ssn=ssn")

    land("a.csv", [(1, "102-45-6002", "person2@example.com"),
                   (2, "103-45-6003", "person3@example.com")])
    first = run()
    assert (first.files_read, first.rows_written) == (1, 2)
    land("b.csv", [(3, "555-55-5555", "nobody@example.com")])
    second = run()
    assert (second.files_read, second.rows_written) == (1, 1)
    assert run().rows_written == 0  # nothing new

    people = _stored(settings, spark, "hr", "people")
    payroll = _stored(settings, spark, "finance", "payroll")
    assert _pairs(people, payroll, "email", "email") == {(1, 102), (2, 103)}
    assert _pairs(people, payroll, "ssn_bidx", "ssn_bidx") == {(1, 102), (2, 103)}
    ctx = build_context(settings, spark)
    plain = decrypt_deterministic_columns(
        people, {"email": "email"}, domains=EqualityDomains(ctx.keyring, settings.catalog))
    plain = decrypt_columns(plain, ["ssn"], keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "people"))
    assert sorted((r["id"], r["ssn"], r["email"]) for r in plain.collect()) == [
        (1, "102-45-6002", "person2@example.com"), (2, "103-45-6003", "person3@example.com"),
        (3, "555-55-5555", "nobody@example.com")]
    registered = table_registry.table_registry(ctx).entries(
        domain_scope(settings.catalog, "email"))
    assert {e.table_name for e in registered} == {f"{settings.catalog}.hr.people",
                                                  f"{settings.catalog}.finance.payroll"}
    # One key per domain, whichever run or source came first.
    created = [e for e in ctx.keyring.audit.events()
               if e["operation"] == "dek_created" and "$equality" in e["scope"]]
    assert len(created) == 2


def _nothing_written(settings, spark) -> None:
    ctx = build_context(settings, spark)
    for name in ("email", "ssn", "mail"):
        assert ctx.keyring.versions(domain_scope(settings.catalog, name)) == []
    assert not ctx.lakehouse.table_exists(spark, settings.catalog, "hr", "staff")
    assert table_registry.table_registry(ctx).entries(include_inactive=True) == []


BAD_PARAMETERS = [
    ({"deterministic_columns": "email=mail"}, "domain 'mail' of column 'email' is not declared"),
    ({"blind_index_columns": "ssn=mail"}, "domain 'mail' of column 'ssn' is not declared"),
    ({"deterministic_columns": "email=email,ssn=ssn"}, r"ssn are in --columns and in "
                                                       "--deterministic-columns"),
    ({"deterministic_columns": "email=email,id=ssn"}, "--id-column id cannot be deterministic"),
    ({"blind_index_columns": "email=email", "deterministic_columns": "email=email"},
     "need no blind index"),
    ({"equality_domains": "ssn:soundex"}, "unknown blind index normal form"),
    ({"equality_domains": "ssn:digits:12,email"}, "multiple of 8"),
    ({"blind_index_columns": "nope=ssn"}, "input has no column"),
]


def test_bad_parameters_are_refused_before_anything_is_written(settings, spark):
    _both_sources(settings, spark)
    for changes, message in BAD_PARAMETERS:
        with pytest.raises(ConfigError, match=message):
            _staff(settings, spark, **changes)
    _nothing_written(settings, spark)


def test_an_input_that_cannot_be_indexed_is_refused(settings, spark):
    kek_setup.run(settings, spark)
    # The input already holds the index column.
    _source(settings, spark, "hr", "staff_in",
            [(1, "n", "1", "a@x", "bi1:1:00")],
            "id int, name string, ssn string, email string, ssn_bidx string")
    with pytest.raises(ConfigError, match=r"already has column.*ssn_bidx"):
        _staff(settings, spark)
    _nothing_written(settings, spark)

    # The column to index holds encrypted cells (the index would be the cell's, not the
    # value's); the keys exist by then, but no row is written.
    ctx = build_context(settings, spark)
    ref = TableRef(settings.catalog, "hr", "staff")
    cells = encrypt_df(spark.createDataFrame([(1, "n", "123-45-6789", "a@x")],
                                             "id int, name string, ssn string, email string"),
                       ["ssn"], keyring=ctx.keyring, table=ref)
    ctx.lakehouse.ensure_schema(spark, settings.catalog, "hr", "input of the test")
    cells.write.saveAsTable(ctx.lakehouse.table(settings.catalog, "hr", "cells_in")
                            .replace("`", ""))
    with pytest.raises(ConfigError, match="ssn of the input hold encrypted cells"):
        encrypt_columns.run(settings, spark, source="hr.cells_in", source_format="table",
                            target_table="hr.staff", columns=["ssn"], id_column="id",
                            equality_domains=DOMAINS, blind_index_columns="ssn=ssn")
    with pytest.raises(ConfigError, match=r"deterministic column.*ssn of the input hold"):
        encrypt_columns.run(settings, spark, source="hr.cells_in", source_format="table",
                            target_table="hr.staff", columns=["name"], id_column="id",
                            equality_domains=DOMAINS, deterministic_columns="ssn=ssn")
    assert not ctx.lakehouse.table_exists(spark, settings.catalog, "hr", "staff")


def test_masks_cover_deterministic_cells_and_leave_indexes_readable(settings, spark):
    _both_sources(settings, spark)
    _staff(settings, spark, mask=True)
    assert sorted(local_masked_columns(spark, settings.catalog, "hr", "staff")) == [
        "email", "name", "ssn"]


def test_only_deterministic_columns(settings, spark):
    _both_sources(settings, spark)
    report = encrypt_columns.run(
        settings, spark, source="finance.payroll_in", source_format="table",
        target_table="finance.payroll", columns=[], id_column="id",
        equality_domains="email", deterministic_columns="email=email")
    assert report.rows_written == 6 and "no randomized column" in str(report)
    stored = _stored(settings, spark, "finance", "payroll")
    assert {r["ssn"] for r in stored.collect()} == {p[1] for p in PAYROLL}  # left in clear
    ctx = build_context(settings, spark)
    assert {e.column_name for e in table_registry.table_registry(ctx).entries()} == {"email"}
    with pytest.raises(ConfigError, match="nothing to encrypt"):
        EqualityColumns.parse("email", "", "").check([])


def test_the_cli_parses_the_three_parameters():
    args = encrypt_columns.build_parser().parse_args([
        "--source=s.t", "--target-table=s.u", "--columns=", "--equality-domains=ssn:digits",
        "--deterministic-columns=email=ssn", "--blind-index-columns=ssn=ssn"])
    equality = EqualityColumns.parse(args.equality_domains, args.deterministic_columns,
                                     args.blind_index_columns)
    assert {c: s.name for c, s in equality.deterministic.items()} == {"email": "ssn"}
    assert equality.blind_indexes["ssn"].normal_form == "digits"
    assert equality.index_columns == {"ssn": "ssn_bidx"}
    with pytest.raises(ConfigError, match="erase_subject would leave them readable"):
        equality.check(["name"], subject_column="customer_id")
    with pytest.raises(ConfigError, match="ssn_bidx are also named as input columns"):
        EqualityColumns.parse("d", "", "ssn=d").check(["ssn_bidx"])


def test_aws_kms_wraps_the_domain_keys(make_kms_settings, spark, tmp_path: Path):
    settings = make_kms_settings(catalog=f"qk{uuid.uuid4().hex[:8]}", schemas=("hr",))
    kek_setup.run(settings, spark)
    _source(settings, spark, "hr", "staff_in", STAFF,
            "id int, name string, ssn string, email string")
    with count_kms_requests() as calls:
        _staff(settings, spark)
    # One data key per new domain (ssn, email), generated and wrapped by KMS.
    assert calls["GenerateDataKey"] == 2
    with count_kms_requests() as calls:
        assert _staff(settings, spark).rows_written == 0
    assert calls["GenerateDataKey"] == 0

    ctx = build_context(settings, spark)  # a new process: the domain keys unwrapped by KMS
    staff = _stored(settings, spark, "hr", "staff")
    with count_kms_requests() as calls:
        plain = decrypt_deterministic_columns(
            staff, {"email": "email"}, domains=EqualityDomains(ctx.keyring, settings.catalog))
        emails = sorted((r["id"], r["email"]) for r in plain.collect())
    assert emails == sorted((s[0], s[3]) for s in STAFF)
    assert calls["Decrypt"] >= 1
    created = {e["scope"]: e["kek_id"] for e in ctx.keyring.audit.events()
               if e["operation"] == "dek_created" and "$equality" in e["scope"]}
    assert set(created) == {domain_scope(settings.catalog, "email"),
                            domain_scope(settings.catalog, "ssn")}
    assert all(kek.startswith("arn:aws:kms:") for kek in created.values())
