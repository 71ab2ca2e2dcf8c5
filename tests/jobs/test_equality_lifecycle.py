"""The lifecycle of an equality domain's key through the jobs, on local Spark (local back
end and aws-kms on moto).

Two tables in two schemas share the domain ``ssn``: ``hr.employees.ssn`` holds deterministic
cells (``ed1``); ``finance.payroll`` holds the randomized cell ``ssn`` (``ee1``) with its blind
index ``ssn_bidx`` (``bi1``) and the manager's SSN as deterministic cells. Rotating the domain
and re-encrypting one table breaks the join across them (the versions differ); re-encrypting
the other restores the plaintext join; a re-run changes nothing; the old version's
retirement and destroy are refused while registered columns hold its values and allowed
after; status and the audit trail show it all.
"""

from __future__ import annotations

import uuid

import pytest

from envelope_encryption.cell.equality import BlindIndexer
from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.identifiers import domain_scope
from envelope_encryption.jobs import (
    dek_generation,
    dek_state,
    kek_setup,
    reencrypt_columns,
    retire_dek,
    status,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_sink import table_location
from envelope_encryption.jobs.reencrypt_batches import Pending
from envelope_encryption.jobs.reencrypt_equality import run as reencrypt_equality
from envelope_encryption.jobs.table_registry import table_registry
from envelope_encryption.keyring.base import DekState
from envelope_encryption.keyring.domains import EqualityDomains
from envelope_encryption.keyring.table_registry import RegisteredColumn, _change_id, _now
from envelope_encryption.spark.cells_guard import NotCellsError
from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
from envelope_encryption.spark.equality_columns import (
    BlindIndex,
    add_blind_indexes,
    decrypt_deterministic_columns,
    domain_versions,
    encrypt_deterministic_columns,
)
from tests.support.aws_fixtures import REGION

DOMAINS = "ssn:digits:32"
SSNS = [f"{n % 70:03d}-{n % 11:02d}-{n:04d}" for n in range(60)]
EMPLOYEES = [(i, SSNS[i]) for i in range(30)]
# Payroll: employees 0, 3, 6, ... and SSNs of no employee, spelt with spaces (the "digits"
# normal form makes them equal); each row has a manager among the employees.
PAYROLL = [(1000 + i, SSNS[i].replace("-", " "), SSNS[(i * 7) % 30]) for i in range(0, 45, 3)]


@pytest.fixture(params=["local", "aws-kms"])
def settings(request, tmp_path) -> Settings:
    catalog = f"q{uuid.uuid4().hex[:8]}"
    if request.param == "local":
        return Settings(catalog=catalog, schemas=("hr", "finance"),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    url = request.getfixturevalue("kms_url")
    return Settings(backend="aws-kms", catalog=catalog, schemas=("hr", "finance"),
                    metastore_id="ms-eq", options={"aws-endpoint-url": url,
                                                   "aws-region": REGION})


def _register(ctx, table: str, column: str, scope: str) -> None:
    """Register ``column`` of ``table`` under ``scope`` (a domain's scope for its columns),
    as encrypt_columns does for the columns it writes."""
    registry = table_registry(ctx)
    registry.ensure()
    now = _now()
    registry._insert([RegisteredColumn(table, column, 1, scope, "", True, now, now, "tester",
                                       now, "tester", _change_id())])


def _write(ctx, df, schema: str, table: str) -> None:
    ctx.lakehouse.ensure_schema(ctx.spark, ctx.settings.catalog, schema, "test data")
    name = ctx.lakehouse.table(ctx.settings.catalog, schema, table).replace("`", "")
    # Several files, so that the batches of the re-encryption have something to choose.
    df.repartition(3).write.saveAsTable(name)


def _setup(settings: Settings, spark):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    catalog = settings.catalog
    domains = EqualityDomains(ctx.keyring, catalog)
    domains.ensure("ssn")
    employees = spark.createDataFrame(EMPLOYEES, "id int, ssn string")
    _write(ctx, encrypt_deterministic_columns(employees, {"ssn": "ssn"}, domains=domains),
           "hr", "employees")
    payroll = spark.createDataFrame(PAYROLL, "pay_id int, ssn string, manager_ssn string")
    indexed = add_blind_indexes(payroll, [BlindIndex("ssn", "ssn", 32, "digits")],
                                domains=domains)
    sealed = encrypt_deterministic_columns(indexed, {"manager_ssn": "ssn"}, domains=domains)
    _write(ctx, encrypt_columns(sealed, ["ssn"], keyring=ctx.keyring,
                                table=TableRef(catalog, "finance", "payroll")),
           "finance", "payroll")
    scope = domain_scope(catalog, "ssn")
    _register(ctx, f"{catalog}.hr.employees", "ssn", scope)
    _register(ctx, f"{catalog}.finance.payroll", "ssn_bidx", scope)
    _register(ctx, f"{catalog}.finance.payroll", "manager_ssn", scope)
    table_registry(ctx).register(catalog, "finance", "payroll", ["ssn"])
    return ctx, domains


def _tables(ctx):
    catalog = ctx.settings.catalog
    for name in ("hr.employees", "finance.payroll"):
        ctx.spark.catalog.refreshTable(f"{catalog}__{name}")
    return (ctx.spark.table(ctx.lakehouse.table(catalog, "hr", "employees")),
            ctx.spark.table(ctx.lakehouse.table(catalog, "finance", "payroll")))


def _manager_join(employees, payroll) -> set:
    """Employees joined to the payroll rows they manage, on the deterministic cells."""
    return {(r.id, r.pay_id) for r in employees.join(
        payroll, employees.ssn == payroll.manager_ssn).select("id", "pay_id").collect()}


def _lookups(domains, payroll) -> set:
    """Each employee's SSN looked up in the payroll's blind index, as a lookup by literal
    does: indexed with the domain's active version."""
    indexer = BlindIndexer(domains.active("ssn"), 32, "digits")
    wanted = {indexer.index(ssn): i for i, ssn in EMPLOYEES}
    return {(wanted[r.ssn_bidx], r.pay_id) for r in payroll.select("pay_id", "ssn_bidx")
            .collect() if r.ssn_bidx in wanted}


PLAIN_MANAGERS = {(i, pay) for i, ssn in EMPLOYEES for pay, _, manager in PAYROLL
                  if manager == ssn}
PLAIN_LOOKUPS = {(i, pay) for i, ssn in EMPLOYEES for pay, pay_ssn, _ in PAYROLL
                 if pay_ssn.replace(" ", "") == ssn.replace("-", "")}


@pytest.mark.slow
def test_rotate_reencrypt_retire_destroy_a_domain(settings, spark, tmp_path):
    ctx, domains = _setup(settings, spark)
    catalog, scope = settings.catalog, domain_scope(settings.catalog, "ssn")
    employees, payroll = _tables(ctx)
    assert PLAIN_MANAGERS and PLAIN_LOOKUPS
    assert _manager_join(employees, payroll) == PLAIN_MANAGERS
    assert _lookups(domains, payroll) == PLAIN_LOOKUPS

    # Rotate the domain through the job: v2 is active, every stored value is still v1.
    assert dek_generation.run(settings, spark, domain="ssn").version == 2
    # The v1 values are found in the registered columns of both tables: retire and destroy
    # are refused, and nothing changes.
    with pytest.raises(KeyringError):
        retire_dek.run(settings, spark, domain="ssn", version=1, tables=())
    with pytest.raises(KeyringError):
        dek_state.run(settings, spark, domain="ssn", version=1, to="destroyed",
                      confirm=f"{scope}:v1")
    assert {r.version: r.state for r in ctx.keyring.versions(scope)}[1] is DekState.ENABLED
    # Lookups by literal use the active version: the v1 index no longer matches.
    assert _lookups(domains, payroll) == set()

    # Re-encrypt one side: the join across the tables breaks (the versions differ).
    hr = reencrypt_columns.main(_argv(settings, "hr.employees",
                                      "--deterministic-columns=ssn=ssn", "--batch-rows=7"))
    assert hr == 0
    employees, payroll = _tables(ctx)
    assert domain_versions(employees, "ssn") == {2: 30}
    assert domain_versions(payroll, "manager_ssn") == {1: len(PAYROLL)}
    assert _manager_join(employees, payroll) == set()

    # Re-encrypt the other side (deterministic cells and blind index in one run).
    report = reencrypt_equality(settings, spark, table="finance.payroll",
                                equality_domains=DOMAINS, deterministic_columns="manager_ssn=ssn",
                                blind_index_columns="ssn=ssn", batch_rows=4)
    n = len(PAYROLL)
    assert report.before == {"manager_ssn": {1: n}, "ssn_bidx": {1: n}}
    assert report.after == {"manager_ssn": {2: n}, "ssn_bidx": {2: n}}
    assert report.rows_done == 2 * n and report.active_versions == {"ssn": 2}
    employees, payroll = _tables(ctx)
    assert _manager_join(employees, payroll) == PLAIN_MANAGERS
    assert _lookups(domains, payroll) == PLAIN_LOOKUPS
    # The plaintext is what it was: the deterministic cells open, the ee1 cells were kept.
    opened = decrypt_deterministic_columns(payroll, {"manager_ssn": "ssn"}, domains=domains)
    assert sorted(r.manager_ssn for r in opened.collect()) == sorted(m for _, _, m in PAYROLL)
    ssns = decrypt_columns(payroll, ["ssn"], keyring=ctx.keyring,
                           table=TableRef(catalog, "finance", "payroll"))
    assert sorted(r.ssn for r in ssns.collect()) == sorted(s for _, s, _ in PAYROLL)

    # A re-run after completion changes nothing: no row selected, no file rewritten.
    folder = table_location(spark, f"{catalog}__finance.payroll")
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")}
    again = reencrypt_equality(settings, spark, table="finance.payroll",
                               equality_domains=DOMAINS, deterministic_columns="manager_ssn=ssn",
                               blind_index_columns="ssn=ssn")
    assert again.rows_to_do == again.rows_done == 0 and again.after == report.after
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")} == files

    # Status counts the values per domain version per registered column (text and JSON).
    text = status.run(settings, spark)
    assert f"column {catalog}.hr.employees.ssn of {scope}: values per domain key version " \
           "{2: 30}" in text
    document = status.run(settings, spark, output_format="json", write_inventory=True)
    columns = {(c["table"], c["column"]): c["cells_per_version"]
               for c in __import__("json").loads(document)["domain_columns"]}
    assert columns == {(f"{catalog}.hr.employees", "ssn"): [{"version": 2, "cells": 30}],
                       (f"{catalog}.finance.payroll", "manager_ssn"):
                           [{"version": 2, "cells": n}],
                       (f"{catalog}.finance.payroll", "ssn_bidx"): [{"version": 2, "cells": n}]}
    rows = spark.table(f"{catalog}__crypto.domain_cell_inventory").collect()
    assert {(r.table_name, r.column_name, r.version, r.cells) for r in rows} == {
        (f"{catalog}.hr.employees", "ssn", 2, 30),
        (f"{catalog}.finance.payroll", "manager_ssn", 2, n),
        (f"{catalog}.finance.payroll", "ssn_bidx", 2, n)}

    # Now v1 goes: decrypt-only, retired, destroyed (the registered columns are checked).
    for to in ("decrypt-only", "retired"):
        assert dek_state.main(_state_argv(settings, "--domain=ssn", "--version=1",
                                          f"--to={to}")) == 0
    with pytest.raises(KeyringError, match="confirm"):
        dek_state.run(settings, spark, domain="ssn", version=1, to="destroyed")
    change = dek_state.run(settings, spark, domain="ssn", version=1, to="destroyed",
                           confirm=f"{scope}:v1")
    assert change.changed and change.after is DekState.DESTROYED
    fresh = build_context(settings, spark)
    assert [k.version for k in EqualityDomains(fresh.keyring, catalog).readable("ssn")] == [2]
    employees, payroll = _tables(fresh)
    assert _manager_join(employees, payroll) == PLAIN_MANAGERS

    # Every operation is in the audit trail under the domain's scope.
    events = [e for e in fresh.keyring.audit.events() if e["scope"] == scope]
    operations = {e["operation"] for e in events}
    assert {"cells_reencrypted", "dek_destroyed"} <= operations
    reencrypted = [e for e in events if e["operation"] == "cells_reencrypted"]
    assert {e["table_name"] for e in reencrypted} == {f"{catalog}.hr.employees",
                                                      f"{catalog}.finance.payroll"}
    assert all(e["key_version"] == 2 for e in reencrypted)


def _argv(settings: Settings, table: str, *more: str) -> list[str]:
    return [*_settings_argv(settings), f"--table={table}", f"--equality-domains={DOMAINS}",
            *more]


def _state_argv(settings: Settings, *more: str) -> list[str]:
    return [*_settings_argv(settings), *more]


def _settings_argv(settings: Settings) -> list[str]:
    argv = [f"--kek-backend={settings.backend}", f"--catalog={settings.catalog}",
            "--schemas=hr,finance", f"--metastore-id={settings.metastore_id}"]
    return argv + [f"--{k}={v}" for k, v in settings.options.items()]


@pytest.mark.slow
def test_a_destroy_is_refused_while_cells_remain(settings, spark):
    ctx, domains = _setup(settings, spark)
    scope = domain_scope(settings.catalog, "ssn")
    domains.rotate("ssn")
    # Only one table moved on: the other's registered columns still hold v1.
    reencrypt_equality(settings, spark, table="hr.employees", equality_domains=DOMAINS,
                       deterministic_columns="ssn=ssn", mode="whole")
    with pytest.raises(KeyringError):
        dek_state.run(settings, spark, domain="ssn", version=1, to="destroyed",
                      confirm=f"{scope}:v1")
    # Given tables are counted too: the moved table alone shows no v1 value...
    assert dek_state.stored_cells(
        ctx, scope, 1, [f"{settings.catalog}.hr.employees"], force=False, job="t",
        job_group="", allow_null_columns=False) == 0
    # ... the registered columns do, and the key is still there and opens them.
    assert dek_state.stored_cells(ctx, scope, 1, [], force=False, job="t", job_group="",
                                  allow_null_columns=False) == 2 * len(PAYROLL)
    versions = {r.version: r.state for r in ctx.keyring.versions(scope)}
    assert versions == {1: DekState.ENABLED, 2: DekState.ENABLED}
    _, payroll = _tables(ctx)
    opened = decrypt_deterministic_columns(payroll, {"manager_ssn": "ssn"}, domains=domains)
    assert opened.where("manager_ssn IS NULL").count() == 0


@pytest.mark.slow
def test_refusals(settings, spark):
    ctx, domains = _setup(settings, spark)
    domains.rotate("ssn")
    # Index columns indexed under another spec than the one declared: refused.
    with pytest.raises(ConfigError, match="not 64 bits long"):
        reencrypt_equality(settings, spark, table="finance.payroll",
                           equality_domains="ssn:digits:64", blind_index_columns="ssn=ssn")
    # A domain not declared, a column both deterministic and indexed, no column at all.
    with pytest.raises(ConfigError, match="not declared"):
        reencrypt_equality(settings, spark, table="hr.employees", equality_domains="email",
                           deterministic_columns="ssn=ssn")
    with pytest.raises(ConfigError, match="both"):
        reencrypt_equality(settings, spark, table="finance.payroll", equality_domains=DOMAINS,
                           deterministic_columns="ssn=ssn", blind_index_columns="ssn=ssn")
    with pytest.raises(ConfigError, match="no equality column"):
        reencrypt_equality(settings, spark, table="hr.employees", equality_domains=DOMAINS)
    # A column that holds no deterministic cell (the randomized ssn): refused, unchanged.
    with pytest.raises(NotCellsError, match="neither deterministic cells nor blind indexes"):
        reencrypt_equality(settings, spark, table="finance.payroll", equality_domains=DOMAINS,
                           deterministic_columns="ssn=ssn")
    # --schema and --domain together, or neither.
    with pytest.raises(ConfigError, match="not both"):
        retire_dek.run(settings, spark, schema="hr", domain="ssn", version=1, tables=())
    with pytest.raises(ConfigError, match="--domain"):
        dek_state.run(settings, spark, version=1, to="retired")
    # Nothing changed: every value still of v1.
    employees, payroll = _tables(ctx)
    assert domain_versions(employees, "ssn") == {1: 30}
    assert domain_versions(payroll, "ssn_bidx") == {1: len(PAYROLL)}


def test_a_domain_with_no_registered_column_is_refused(spark, tmp_path):
    settings = Settings(catalog=f"q{uuid.uuid4().hex[:8]}", schemas=("hr",),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    EqualityDomains(ctx.keyring, settings.catalog).ensure("email")
    dek_generation.run(settings, spark, domain="email")
    with pytest.raises(ConfigError, match="no column is registered"):
        retire_dek.run(settings, spark, domain="email", version=1, tables=())
    # --force retires it without counting (cells still using it become unreadable).
    record = retire_dek.run(settings, spark, domain="email", version=1, tables=(), force=True)
    assert record.state is DekState.RETIRED


def test_the_batch_predicate_selects_older_domain_versions(spark):
    values = [("a", "ed1:1:string:AAAA", "bi1:1:0a0b"), ("b", "ed1:2:string:AAAA", "bi1:2:0a0b"),
              ("c", "ed1:10:string:AAAA", None), ("d", "ee1:1:string:AAAA", "bi1:3:0a0b")]
    df = spark.createDataFrame(values, "id STRING, d STRING, i STRING")

    def selected(column: str, marker: str, found) -> list[str]:
        pending = Pending((column,), 2, tuple(v for v in found if v != 2), marker=marker)
        return sorted(r["id"] for r in df.where(pending.predicate()).collect())

    # v1 is not v10; an ee1 cell of v1 is not an ed1 cell of v1; indexes by their own marker.
    assert selected("d", "ed1:", [1, 2]) == ["a"]
    assert selected("d", "ed1:", [1, 2, 10]) == ["a", "c"]
    assert selected("i", "bi1:", [1, 2, 3]) == ["a", "d"]
    assert "startswith(`i`, 'bi1:1:')" in Pending(("i",), 2, (1,), marker="bi1:").predicate()
