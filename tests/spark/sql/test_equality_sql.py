"""The SQL of equality domains on local Spark, through the rendered SQL and the local stand-ins:
members read deterministic (``ed1``) cells through the masks, anyone with the lookup
functions computes a literal's blind index or deterministic cell, and both agree with the
DataFrame functions. The local back end throughout, and aws-kms on moto over HTTP."""

from __future__ import annotations

import base64
import json

import pytest
from pyspark.errors import PySparkException

from envelope_encryption.cell.equality import DomainKeys, parse_domain_specs
from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.identifiers import domain_scope
from envelope_encryption.keyring.domains import EqualityDomains
from envelope_encryption.spark.equality_columns import (
    BlindIndex,
    add_blind_indexes,
    encrypt_deterministic_columns,
)
from envelope_encryption.spark.sql import runtime
from envelope_encryption.spark.sql.decrypt_cells import scope_keys
from envelope_encryption.spark.sql.equality_runtime import equality_values
from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment
from envelope_encryption.spark.sql.target import SqlOptions

from .conftest import make_local_context
from .test_backends import _kms_context

SPEC = "ssn:digits:64"
EMPLOYEES = [(1, "123-45-6789"), (2, "987-65-4321"), (3, None), (4, "Zoë 日本 ' --")]
PAYROLL = [(10, "987-65-4321", 500), (11, "123-45-6789", 700), (12, "555-55-5555", 900)]


def _options(**extra) -> SqlOptions:
    return SqlOptions(equality_domains=parse_domain_specs(SPEC), **extra)


def _group(ctx, schema: str) -> str:
    return f"{ctx.settings.catalog}.{schema}.crypto.user"


def _store(ctx, rows, schema: str, table: str, ddl: str):
    """Rows with ``ssn`` as deterministic cells of domain ssn and a 64-bit digits index
    beside them (``ssn_bidx``), written through the DataFrame functions."""
    from envelope_encryption.spark.columns import TableRef

    domains = EqualityDomains(ctx.keyring, ctx.settings.catalog)
    domains.ensure("ssn")
    df = ctx.spark.createDataFrame(rows, ddl)
    indexed = add_blind_indexes(df, [BlindIndex("ssn", "ssn", bits=64, normal_form="digits")],
                                domains=domains)
    cells = encrypt_deterministic_columns(indexed, {"ssn": "ssn"}, domains=domains)
    ctx.lakehouse.ensure_schema(ctx.spark, ctx.settings.catalog, schema, "test data")
    cells.write.mode("append").saveAsTable(
        f"{ctx.lakehouse.schema(ctx.settings.catalog, schema)}.`{table}`")
    return TableRef(ctx.settings.catalog, schema, table)


def _tables(ctx):
    employees = _store(ctx, EMPLOYEES, "hr", "employees", "id int, ssn string")
    payroll = _store(ctx, PAYROLL, "finance", "payroll", "pay_id int, ssn string, amount int")
    return employees, payroll


@pytest.fixture()
def two_schemas(spark, tmp_path):
    return make_local_context(spark, tmp_path, schemas=("hr", "finance"))


def _stored(ctx, ref) -> str:
    return ctx.lakehouse.storage_table(ctx.spark, ref.catalog, ref.schema, ref.table)


def test_members_read_ed1_cells_of_two_schemas_others_null_jobs_the_cell(two_schemas):
    ctx, spark = two_schemas, two_schemas.spark
    employees, payroll = _tables(ctx)
    members = LocalSqlEnvironment(spark, ctx.settings, _options(),
                                  groups=[_group(ctx, "hr"), _group(ctx, "finance")]).install()
    seen = spark.table(members.masked_view(employees, ["ssn"])).orderBy("id").collect()
    assert [(r.id, r.ssn) for r in seen] == EMPLOYEES
    paid = spark.table(members.masked_view(payroll, ["ssn"])).orderBy("pay_id").collect()
    assert [(r.pay_id, r.ssn, r.amount) for r in paid] == PAYROLL
    # The join runs on the stored cells themselves: equal SSNs, equal cells across schemas.
    joined = spark.sql(
        f"SELECT e.id, p.pay_id FROM {_stored(ctx, employees)} e "
        f"JOIN {_stored(ctx, payroll)} p ON e.ssn = p.ssn").collect()
    assert sorted(tuple(r) for r in joined) == [(1, 11), (2, 10)]

    others = LocalSqlEnvironment(spark, ctx.settings, _options(), groups=["someone"]).install()
    hidden = spark.table(others.masked_view(employees, ["ssn"], "hidden")).collect()
    assert {r.ssn for r in hidden} == {None}
    assert (others.keyring_uses, others.kek_unwraps) == (0, [])

    jobs = LocalSqlEnvironment(spark, ctx.settings, _options(), groups=[
        f"{ctx.settings.catalog}.crypto.jobs", _group(ctx, "hr")]).install()
    cells = spark.table(jobs.masked_view(employees, ["ssn"], "as_job")).orderBy("id").collect()
    stored = spark.table(_stored(ctx, employees)).orderBy("id").collect()
    assert [r.ssn for r in cells] == [r.ssn for r in stored]
    assert all(r.ssn is None or r.ssn.startswith("ed1:1:string:") for r in cells)
    assert jobs.keyring_uses == 0


def test_a_member_without_domains_configured_gets_the_not_a_cell_error(two_schemas):
    ctx, spark = two_schemas, two_schemas.spark
    employees, _ = _tables(ctx)
    env = LocalSqlEnvironment(spark, ctx.settings, groups=[_group(ctx, "hr")]).install()
    with pytest.raises(PySparkException, match="not an encrypted cell"):
        spark.table(env.masked_view(employees, ["ssn"])).collect()


def _lookup(spark, function: str, literal: str) -> str:
    return spark.sql(f"SELECT {function}(:v) AS v", args={"v": literal}).first().v


def test_lookups_by_literal_find_the_row_and_equal_the_dataframe_functions(two_schemas):
    ctx, spark = two_schemas, two_schemas.spark
    employees, _ = _tables(ctx)
    env = LocalSqlEnvironment(spark, ctx.settings, _options(), groups=[]).install()
    blind, cell = env.lookup_function("blind_index", "ssn"), env.lookup_function(
        "deterministic", "ssn")
    table = _stored(ctx, employees)
    # The digits-only normal form: written with dashes, looked up with spaces or none.
    for literal in ("123-45-6789", "123 45 6789", "123456789"):
        rows = spark.sql(f"SELECT id FROM {table} WHERE ssn_bidx = {blind}(:v)",
                         args={"v": literal}).collect()
        assert [r.id for r in rows] == [1]
    rows = spark.sql(f"SELECT id FROM {table} WHERE ssn = {cell}('987-65-4321')").collect()
    assert [r.id for r in rows] == [2]
    assert spark.sql(f"SELECT id FROM {table} WHERE ssn = {cell}('987 65 4321')").count() == 0
    # Equal to what the DataFrame functions write, value by value, NULL staying NULL.
    stored = {r.id: (r.ssn, r.ssn_bidx) for r in spark.table(table).collect()}
    for row_id, plain in EMPLOYEES:
        got = spark.sql(f"SELECT {cell}(:v) AS c, {blind}(:v) AS b",
                        args={"v": plain}).first() if plain is not None else \
            spark.sql(f"SELECT {cell}(CAST(NULL AS STRING)) AS c, "
                      f"{blind}(CAST(NULL AS STRING)) AS b").first()
        assert (got.c, got.b) == stored[row_id]
    assert stored[1][1].startswith("bi1:1:") and len(stored[1][1]) == len("bi1:1:") + 16
    # A non-member: an index, no decrypt keyring and no key in the plan.
    assert env.keyring_uses == 0 and env.lookup_uses > 0
    query = spark.sql(f"SELECT id FROM {table} WHERE ssn_bidx = {blind}('123-45-6789')")
    assert [r.id for r in query.collect()] == [1]
    plan = query._jdf.queryExecution().toString()
    scope = domain_scope(ctx.settings.catalog, "ssn")
    key = ctx.keyring.dek(scope, 1)
    derived = DomainKeys.derive("ssn", 1, key)
    for secret in (key, derived.enc, derived.iv, derived.index):
        raw = secret.reveal()
        assert raw.hex().upper() not in plan.upper()
        assert base64.b64encode(raw).decode() not in plan


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_cells_of_another_domain_tampered_or_unknown_are_refused(two_schemas, mode):
    ctx, spark = two_schemas, two_schemas.spark
    employees, _ = _tables(ctx)
    other = EqualityDomains(ctx.keyring, ctx.settings.catalog)
    other.ensure("tax_id")
    foreign = encrypt_deterministic_columns(
        spark.createDataFrame([("123-45-6789",)], "ssn string"), {"ssn": "tax_id"},
        domains=other).first().ssn
    good = spark.table(_stored(ctx, employees)).where("id = 1").first().ssn
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    cases = {
        "does not authenticate": [foreign, flipped],
        "unknown or retired": [good.replace("ed1:1:", "ed1:9:")],
        "malformed": ["ed1:1:string:!!", good + "\n"],
    }
    env = LocalSqlEnvironment(spark, ctx.settings, _options(decrypt=mode),
                              groups=[_group(ctx, "hr")]).install()
    decrypt = env.decrypt_function("hr")
    assert spark.sql(f"SELECT {decrypt}(:v, 'employees', 'ssn') AS v",
                     args={"v": good}).first().v == "123-45-6789"
    for message, values in cases.items():
        for value in values:
            query = spark.sql(f"SELECT {decrypt}(:v, 'employees', 'ssn') AS v",
                              args={"v": value})
            if mode == "strict":
                with pytest.raises(PySparkException, match=message):
                    query.collect()
            else:
                assert query.first().v is None


def test_after_a_rotation_lookups_use_the_new_version_and_old_cells_still_open(two_schemas):
    ctx, spark = two_schemas, two_schemas.spark
    employees, _ = _tables(ctx)
    domains = EqualityDomains(ctx.keyring, ctx.settings.catalog)
    assert domains.rotate("ssn") == 2
    newer = _store(ctx, [(5, "111-22-3333")], "hr", "employees", "id int, ssn string")
    env = LocalSqlEnvironment(spark, ctx.settings, _options(),
                              groups=[_group(ctx, "hr")]).install()
    seen = {r.id: r.ssn for r in spark.table(env.masked_view(newer, ["ssn"])).collect()}
    assert seen == {**dict(EMPLOYEES), 5: "111-22-3333"}
    blind = env.lookup_function("blind_index", "ssn")
    cell = env.lookup_function("deterministic", "ssn")
    assert _lookup(spark, blind, "111-22-3333").startswith("bi1:2:")
    assert _lookup(spark, cell, "111-22-3333").startswith("ed1:2:string:")
    rows = spark.sql(f"SELECT id FROM {_stored(ctx, employees)} "
                     f"WHERE ssn = {cell}('111-22-3333')").collect()
    assert [r.id for r in rows] == [5]
    # A row of version 1 is not found by a version 2 lookup: the version shows why.
    assert spark.sql(f"SELECT id FROM {_stored(ctx, employees)} "
                     f"WHERE ssn = {cell}('123-45-6789')").count() == 0


def _ring(ctx, scope: str) -> tuple[list[dict], str]:
    from .test_decrypt_cells import _passed

    (integrity,) = ctx.store.integrity_history()
    return [_passed(r) for r in ctx.store.current(scope)], json.dumps(_passed(integrity))


def test_a_domain_scope_not_configured_is_refused(two_schemas):
    ctx = two_schemas
    _tables(ctx)
    EqualityDomains(ctx.keyring, ctx.settings.catalog).ensure("tax_id")
    payload = runtime.settings_payload(ctx.settings, _options().equality_domains)
    forged = domain_scope(ctx.settings.catalog, "tax_id")
    records, integrity = _ring(ctx, forged)
    text = json.dumps({"key_alias": forged, "records": records, "integrity": integrity})
    with pytest.raises(KeyringError, match="refused"):
        equality_values(payload, ["blind_index"], ["tax_id"], ["x"], [text])
    with pytest.raises(KeyringError, match="refused"):  # a configured name, other records
        equality_values(payload, ["blind_index"], ["ssn"], ["x"], [text])
    hr_records, _ = _ring(ctx, ctx.settings.scope("hr"))
    mask_ring = {"key_alias": ctx.settings.scope("hr"), "records": hr_records,
                 "integrity": integrity}
    with pytest.raises(KeyringError, match="refused"):
        scope_keys(payload, json.dumps({**mask_ring, "domains": [
            {"key_alias": forged, "records": records}]}))
    ssn = domain_scope(ctx.settings.catalog, "ssn")
    ssn_records, _ = _ring(ctx, ssn)
    with pytest.raises(KeyringError, match="refused"):  # a domain's records as a schema's
        scope_keys(payload, json.dumps({"key_alias": ssn, "records": ssn_records,
                                        "integrity": integrity}))
    # unwrap_key's settings name no domain: it unwraps no domain key, configured or not.
    with pytest.raises(KeyringError, match="refused"):
        runtime.unwrap_records(runtime.settings_payload(ctx.settings), ssn, ssn_records,
                               integrity)
    keys = scope_keys(payload, json.dumps({**mask_ring, "domains": [
        {"key_alias": ssn, "records": ssn_records}]}))
    assert [d.domain for d in keys.domains] == ["ssn"] and "domains=['ssn']" in repr(keys)


def test_lookup_grants_and_kek_setup_options():
    from envelope_encryption.jobs.kek_setup import build_parser, sql_options
    from envelope_encryption.spark.sql.render import render_deployment

    args = build_parser().parse_args([
        "--sql-functions", "true",
        "--equality-domains", "ssn:digits:64,email:casefold",
        "--sql-lookup-group", "{catalog}.crypto.lookup"])
    options = sql_options(args)
    assert sorted(options.equality_domains) == ["email", "ssn"]
    assert options.equality_domains["ssn"].bits == 64
    settings = Settings(
        backend="aws-kms", catalog="main", schemas=("hr",), metastore_id="m",
        service_credential="cred", options={"aws-region": "eu-west-1"})
    statements = render_deployment(settings, options)
    grants = [s for s in statements if s.startswith("GRANT")]
    assert grants == ["GRANT USE SCHEMA ON SCHEMA `main`.`crypto` TO `main.crypto.lookup`"] + [
        f"GRANT EXECUTE ON FUNCTION `main`.`crypto`.`{kind}_{d}` TO `main.crypto.lookup`"
        for d in ("email", "ssn") for kind in ("blind_index", "deterministic")]
    assert ("REVOKE ALL PRIVILEGES ON FUNCTION `main`.`crypto`.`equality_values` FROM "
            "`account users`") in statements
    # The unwrap function's settings name no domain; the batch functions' do.
    unwrap = next(s for s in statements if "`unwrap_key`(" in s)
    assert "equality_domains" not in unwrap
    assert sum("'equality_domains': {'email': ['casefold', 32], 'ssn': ['digits', 64]}" in s
               for s in statements) == 2  # decrypt_cells and equality_values
    without = render_deployment(settings, SqlOptions())
    assert not any("equality" in s or "$equality" in s for s in without)
    with pytest.raises(ConfigError, match="lookup"):
        SqlOptions(lookup_group="g")


def test_aws_kms_members_read_ed1_and_lookups_equal_the_dataframe_functions(spark, moto):
    ctx = _kms_context(spark, moto)
    employees = _store(ctx, EMPLOYEES, "hr", "employees", "id int, ssn string")
    env = LocalSqlEnvironment(spark, ctx.settings, _options(),
                              groups=[_group(ctx, "hr")]).install()
    seen = spark.table(env.masked_view(employees, ["ssn"])).orderBy("id").collect()
    assert [(r.id, r.ssn) for r in seen] == EMPLOYEES
    stored = {r.id: (r.ssn, r.ssn_bidx) for r in spark.table(_stored(ctx, employees)).collect()}
    blind = env.lookup_function("blind_index", "ssn")
    cell = env.lookup_function("deterministic", "ssn")
    assert (_lookup(spark, cell, "123-45-6789"), _lookup(spark, blind, "123 45 6789")) \
        == stored[1]
    # KMS was asked once per worker process for each of the two keys of version 1 (the
    # scope's DEK and the domain's key), not per row nor per query.
    workers = {pid for pid, _ in env.kek_unwraps}
    assert {v for _, v in env.kek_unwraps} == {1} and len(env.kek_unwraps) <= 2 * len(workers)
    spark.table(env.masked_view(employees, ["ssn"], "again")).collect()
    assert len(env.kek_unwraps) <= 2 * len({pid for pid, _ in env.kek_unwraps})


def test_non_members_in_ciphertext_mode_look_rows_up_through_the_mask(two_schemas):
    from envelope_encryption.spark.sql.local_masks import mask_expression

    ctx, spark = two_schemas, two_schemas.spark
    employees, _ = _tables(ctx)
    options = _options(non_member="ciphertext")
    env = LocalSqlEnvironment(spark, ctx.settings, options, groups=[]).install()
    view = env.masked_view(employees, ["ssn"], "as_cipher")
    cell = env.lookup_function("deterministic", "ssn")
    rows = spark.sql(f"SELECT id FROM {view} WHERE ssn = {cell}('123-45-6789')").collect()
    assert [r.id for r in rows] == [1]
    assert env.keyring_uses == 0
    # The plain-SQL mask on table names passes the same values, and nothing that is not a
    # cell's shape; the default mode passes nothing.
    stored = _stored(ctx, employees)
    for opts, expect_cells in ((options, True), (_options(), False)):
        masked = mask_expression("ssn", opts, ctx.settings.catalog, "hr")
        seen = spark.sql(f"SELECT ssn AS stored, {masked} AS ssn FROM ("
                         f"SELECT ssn FROM {stored} UNION ALL SELECT 'ed1:1:string:AAAA')"
                         ).collect()
        assert [r.ssn for r in seen] == [r.stored if expect_cells and r.stored and
                                         len(r.stored) > 20 else None for r in seen]


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_decrypt_cells_answers_each_ed1_cell_with_both_column_kinds(two_schemas, kind):
    """The handler as Unity Catalog (pandas) and the local stand-in (Arrow) call it."""
    import hmac

    import pandas as pd
    import pyarrow as pa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from envelope_encryption.cell.equality import (
        DeterministicSealer,
        deterministic_aad,
        deterministic_header,
    )
    from envelope_encryption.cell.format import encrypt_value
    from envelope_encryption.spark.sql.decrypt_cells import decrypt_cells_batches

    ctx = two_schemas
    domains = EqualityDomains(ctx.keyring, ctx.settings.catalog)
    for name in ("ssn", "tax_id"):
        domains.ensure(name)
    ssn, tax = domains.active("ssn"), domains.active("tax_id")
    good = DeterministicSealer(ssn).seal("123-45-6789", "string")
    header = deterministic_header(1, "string")
    aad = deterministic_aad(header, "ssn")
    iv = hmac.digest(ssn.iv.reveal(), b"x", "sha256")[:12]
    not_utf8 = header + base64.b64encode(
        iv + AESGCM(ssn.enc.reveal()).encrypt(iv, b"\xff\xfe", aad)).decode()
    scope = ctx.settings.scope("hr")
    place = f"{scope}.employees.ssn"
    cases = [
        (good, "+123-45-6789"),
        (DeterministicSealer(ssn).seal("42", "int"), "+42"),
        (encrypt_value("x", ctx.keyring.dek(scope, 1).reveal(), 1, "string", place), "+x"),
        (None, None),
        (DeterministicSealer(tax).seal("123-45-6789", "string"), "!A"),  # another domain
        (good.replace("ed1:1:", "ed1:9:"), "!V"),
        (not_utf8, "!U"),
        ("ed1:1:string:!!", "!M"),
        ("ed1:x", "!M"),
    ]
    hr_records, integrity = _ring(ctx, scope)
    ssn_records, _ = _ring(ctx, domain_scope(ctx.settings.catalog, "ssn"))
    ring = json.dumps({"key_alias": scope, "records": hr_records, "integrity": integrity,
                       "domains": [{"key_alias": domain_scope(ctx.settings.catalog, "ssn"),
                                    "records": ssn_records}]})
    column = (lambda xs: pd.Series(xs, dtype=object)) if kind == "pandas" else \
        (lambda xs: pa.array(xs, type=pa.string()))
    values = [v for v, _ in cases]
    worker = runtime._Worker()
    original, runtime._worker = runtime._worker, worker
    try:
        (answer,) = decrypt_cells_batches(iter([(
            column(values), column([place] * len(values)), column([ring] * len(values)))]),
            runtime.settings_payload(ctx.settings, _options().equality_domains))
    finally:
        runtime._worker = original
        worker.close()
    got = answer.tolist() if kind == "pandas" else answer.to_pylist()
    assert got == [expected for _, expected in cases]
