"""The registry of encrypted columns on local Spark: filled by encrypt_columns (once),
edited by the table_registry job, read by retire_dek and reencrypt_columns when no tables are
given, and free of key material."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.jobs import (
    dek_generation,
    encrypt_columns,
    kek_setup,
    reencrypt_columns,
    retire_dek,
    table_registry,
)
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.kek.base import WrapContext
from envelope_encryption.keyring.base import LEGACY_KEY_TYPE, DekRecord
from envelope_encryption.keyring.table_registry import REGISTRY_TABLE, TableRegistry
from envelope_encryption.secret import SecretKey
from tests.jobs.test_key_safety_jobs import _legacy_table
from tests.support.keyrings import append_signed


@pytest.fixture()
def settings(tmp_path):
    return Settings(
        catalog=f"r{uuid.uuid4().hex[:8]}", schemas=("hr", "sales"),
        options={"local-kek-file": str(tmp_path / "kek.key")},
    )


def _encrypt_files(settings, spark, landing, **kw):
    return encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                               target_table="hr.customers", columns=list(PII_COLUMNS), **kw)


def _customers_under_v1_then_v2_active(settings, spark, tmp_path, rows: int) -> None:
    """hr.customers with ``rows`` rows encrypted under v1; v2 is then the active DEK."""
    kek_setup.run(settings, spark)
    write_csv(customers(rows), tmp_path / "landing" / "a.csv")
    _encrypt_files(settings, spark, tmp_path / "landing")
    dek_generation.run(settings, spark, schema="hr")


def _registry_rows(settings, spark) -> list[dict]:
    ctx = build_context(settings, spark)
    name = ctx.lakehouse.table(settings.catalog, settings.crypto_schema, REGISTRY_TABLE)
    return [r.asDict() for r in spark.table(name).collect()]


def _cli(settings, tmp_path, *args) -> int:
    return table_registry.main([
        f"--catalog={settings.catalog}", "--schemas=hr,sales",
        f"--local-kek-file={tmp_path / 'kek.key'}", *args])


def test_encrypt_columns_registers_its_columns_once(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    assert table_registry.registered_tables(ctx) == []  # no registry table yet: none
    landing = tmp_path / "landing"
    write_csv(customers(6), landing / "a.csv")
    _encrypt_files(settings, spark, landing)
    hr = f"{settings.catalog}.hr"
    assert table_registry.registered_tables(ctx, hr) == [f"{hr}.customers"]
    assert table_registry.registered_tables(ctx, f"{settings.catalog}.sales") == []
    entries = table_registry.table_registry(ctx).entries(hr)
    assert [e.column_name for e in entries] == sorted(PII_COLUMNS)
    assert {(e.scope, e.row_key_column, e.active, e.revision) for e in entries} == {
        (hr, "", True, 1)}
    rows = len(_registry_rows(settings, spark))

    # Re-runs, with and without new files, add no registry row.
    _encrypt_files(settings, spark, landing)
    write_csv(customers(3, first_id=7), landing / "b.csv")
    assert _encrypt_files(settings, spark, landing).rows_written == 3
    assert len(_registry_rows(settings, spark)) == rows

    # The table source path registers too, with its row key column.
    source = ctx.lakehouse.table(settings.catalog, "sales", "raw")
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {ctx.lakehouse.schema(settings.catalog, 'sales')}")
    spark.createDataFrame([(1, "a@x"), (2, "b@x")], "id int, email string").write.saveAsTable(
        source.replace("`", ""))
    for _ in range(2):
        encrypt_columns.run(settings, spark, source="sales.raw", source_format="table",
                            target_table="sales.people", columns=["email"], id_column="id",
                            row_key_column="id")
    sales = table_registry.table_registry(ctx).entries(f"{settings.catalog}.sales")
    assert [(e.table_name, e.column_name, e.row_key_column, e.revision) for e in sales] == [
        (f"{settings.catalog}.sales.people", "email", "id", 1)]


def test_retire_dek_checks_the_registered_tables(settings, spark, tmp_path, caplog):
    _customers_under_v1_then_v2_active(settings, spark, tmp_path, 5)

    # No --tables: the registered table is counted, and holds cells of v1.
    with caplog.at_level("INFO", logger="envelope_encryption"):
        with pytest.raises(KeyringError, match="still use it"):
            retire_dek.run(settings, spark, schema="hr", version=1, tables=[])
    assert f"registered for {settings.catalog}.hr: {settings.catalog}.hr.customers" in (
        caplog.text)
    ctx = build_context(settings, spark)
    assert ctx.keyring.versions(f"{settings.catalog}.hr")[0].state.value == "ENABLED"

    reencrypt_columns.run(settings, spark, table="hr.customers", columns=list(PII_COLUMNS))
    retired = retire_dek.run(settings, spark, schema="hr", version=1, tables=[])
    assert retired.state.value == "RETIRED"

    # A scope with no registered table still refuses without --tables, as before.
    with pytest.raises(ConfigError, match="without --tables: no table is registered"):
        retire_dek.run(settings, spark, schema="sales", version=1, tables=[])


def test_unregistered_and_dropped_tables(settings, spark, tmp_path, capsys):
    _customers_under_v1_then_v2_active(settings, spark, tmp_path, 4)
    ctx = build_context(settings, spark)
    hr = f"{settings.catalog}.hr"

    assert _cli(settings, tmp_path, "--unregister", "hr.customers") == 0
    assert table_registry.registered_tables(ctx, hr) == []
    # Unregistered: the job no longer knows where cells are, and refuses without --tables.
    with pytest.raises(ConfigError, match="no table is registered"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[])
    with pytest.raises(ConfigError, match="not registered"):
        table_registry.run(settings, spark, unregister="hr.customers")
    everything = table_registry.run(settings, spark, include_inactive=True)
    assert {(e.active, e.revision) for e in everything} == {(False, 2)}

    # Registered again by hand: a new revision that keeps the first registration time.
    capsys.readouterr()
    assert _cli(settings, tmp_path, "--register", "hr.customers",
                "--columns", ",".join(PII_COLUMNS)) == 0
    assert "rows not bound, active (revision 3" in capsys.readouterr().out
    again = table_registry.run(settings, spark)
    assert all(e.first_registered_at == f.first_registered_at and e.active
               for e, f in zip(again, everything, strict=True))
    assert _cli(settings, tmp_path, "--register", "hr.customers", "--columns", "ssn") == 0
    assert "nothing to change" in capsys.readouterr().out

    # A registered table that was dropped is named, not silently skipped.
    spark.sql(f"DROP TABLE {ctx.lakehouse.table(settings.catalog, 'hr', 'customers')}")
    with pytest.raises(ConfigError, match=r"registered for .* but does not exist"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[])
    assert _cli(settings, tmp_path, "--unregister", f"{hr}.customers",
                "--columns", "email") == 0
    assert len(table_registry.run(settings, spark, schema="hr")) == len(PII_COLUMNS) - 1


def test_cli_checks_its_input_and_lists_json(settings, spark, tmp_path, capsys):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(2), landing / "a.csv")
    _encrypt_files(settings, spark, landing)
    for args, message in [
        (["--register", "hr.customers"], "--register needs --columns"),
        (["--register", "hr.nope", "--columns", "ssn"], "does not exist"),
        (["--register", "hr.customers", "--columns", "ssn,shoe_size"], "shoe_size"),
        (["--register", "hr.customers", "--columns", "ssn", "--row-key-column", "x"], "x"),
        (["--columns", "ssn"], "goes with --register or --unregister"),
        (["--unregister", "hr.customers", "--columns", "shoe_size"], "shoe_size"),
        (["--register", "hr.customers`; DROP", "--columns", "ssn"], "invalid"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            _cli(settings, tmp_path, *args)
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err
    assert len(table_registry.run(settings, spark)) == len(PII_COLUMNS)

    assert _cli(settings, tmp_path, "--list", "--schema", "hr", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(e["column_name"] for e in listed) == sorted(PII_COLUMNS)
    assert _cli(settings, tmp_path, "--schema", "sales") == 0
    assert capsys.readouterr().out.strip() == "no registered column"
    assert "--unregister" in table_registry.build_parser().format_help()


def test_the_registry_holds_no_key_material(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(3), landing / "a.csv")
    _encrypt_files(settings, spark, landing)
    ctx = build_context(settings, spark)
    name = ctx.lakehouse.table(settings.catalog, settings.crypto_schema, REGISTRY_TABLE)
    types = {f.dataType.simpleString() for f in spark.table(name).schema.fields}
    assert types <= {"string", "int", "boolean", "timestamp"}  # no binary column at all
    scope = f"{settings.catalog}.hr"
    record = ctx.keyring.versions(scope)[0]
    key = ctx.keyring.dek(scope, 1).reveal()
    forbidden = [form for blob in (key, record.wrapped.blob)
                 for form in (blob.hex(), base64.b64encode(blob).decode(), repr(blob))]
    text = json.dumps(_registry_rows(settings, spark), default=str)
    assert text and not [form for form in forbidden if form in text]
    # Only names: neither the cells nor the plaintext values are in it either.
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "customers")).collect()
    values = [str(row[c]) for row in stored for c in PII_COLUMNS]
    values += [str(row[c]) for row in customers(3) for c in PII_COLUMNS]
    assert values and not [value for value in values if value in text]


def test_concurrent_registrations_write_each_entry_once(settings, spark):
    ctx = build_context(settings, spark)
    registry = TableRegistry(spark, ctx.lakehouse, settings.catalog, settings.crypto_schema,
                             "tester")
    errors: list[BaseException] = []

    def register() -> None:
        try:
            registry.register(settings.catalog, "hr", "t", ["a", "b"])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = _registry_rows(settings, spark)
    assert sorted((r["column_name"], r["revision"]) for r in rows) == [("a", 1), ("b", 1)]
    assert registry.tables(f"{settings.catalog}.hr") == [f"{settings.catalog}.hr.t"]


def test_retire_legacy_checks_the_registered_tables(settings, spark):
    kek_setup.run(settings, spark)
    ctx = build_context(settings, spark)
    scope = f"{settings.catalog}.old"
    dek_text = base64.b64encode(secrets.token_bytes(24)).decode()  # the notebooks' DEK
    wrapped = ctx.kek.wrap(SecretKey(dek_text.encode()), WrapContext(scope, 1))
    append_signed(ctx.store, ctx.kek, DekRecord(scope=scope, version=1, wrapped=wrapped,
                                                kek_backend=ctx.kek.backend,
                                                key_type=LEGACY_KEY_TYPE))
    ctx.keyring.create_version(scope)
    _legacy_table(spark, ctx, settings.catalog, "people", dek_text, ["Ada", "Alan"])
    _legacy_table(spark, ctx, settings.catalog, "other", dek_text, ["Grace"])
    _legacy_table(spark, ctx, settings.catalog, "gone", dek_text, ["Alan"])
    for table in ("old.people", "old.other", "old.gone"):
        table_registry.run(settings, spark, register=table, columns=["name"])
    people = ctx.lakehouse.table(settings.catalog, "old", "people")
    before = sorted(r["name"] for r in spark.table(people).collect())

    # A registered table that was dropped stops the job before anything is rewritten.
    spark.sql(f"DROP TABLE {ctx.lakehouse.table(settings.catalog, 'old', 'gone')}")
    with pytest.raises(ConfigError, match=r"old\.gone is registered"):
        reencrypt_columns.run(settings, spark, table="old.people", columns=["name"],
                              retire_legacy=True)
    assert sorted(r["name"] for r in spark.table(people).collect()) == before
    table_registry.run(settings, spark, unregister="old.gone")

    # No --tables: the registered old.other still holds a legacy value, so no retirement.
    with pytest.raises(KeyringError, match=r"not retired: 1 value.*old\.other"):
        reencrypt_columns.run(settings, spark, table="old.people", columns=["name"],
                              retire_legacy=True)
    assert ctx.keyring.versions(scope)[0].state.value == "ENABLED"
    report = reencrypt_columns.run(settings, spark, table="old.other", columns=["name"],
                                   retire_legacy=True)
    assert report.retired_legacy == [1]
