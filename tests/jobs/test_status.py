"""The ``status`` job's inventory: text and JSON show the same facts, taken from the keyring
as it verifies them, with no key material; a scope whose records were edited is reported,
not shown with the edited states."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.jobs import dek_generation, encrypt_columns, kek_setup, retire_dek, status
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.keyring.base import DekState


@pytest.fixture()
def settings(tmp_path):
    return Settings(
        catalog=f"st{uuid.uuid4().hex[:8]}", schemas=("hr",),
        options={"local-kek-file": str(tmp_path / "kek.key")},
    )


def _encrypt(settings, spark, landing):
    encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                        target_table="hr.customers", columns=list(PII_COLUMNS))


def test_status_json_is_the_inventory(settings, spark, tmp_path, capsys):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(6), landing / "a.csv")
    _encrypt(settings, spark, landing)
    dek_generation.run(settings, spark, schema="hr")

    document = json.loads(status.run(settings, spark, tables=["hr.customers"],
                                     output_format="json"))
    assert document["schema_version"] == 1
    assert document["kek"] and not document["kek_problem"]
    (scope,) = [s for s in document["scopes"] if s["scope"] == settings.scope("hr")]
    assert scope["problem"] == ""
    assert [(v["version"], v["state"], v["active"]) for v in scope["versions"]] == [
        (1, "ENABLED", False), (2, "ENABLED", True)]
    (table,) = document["tables"]
    assert table["table"] == f"{settings.catalog}.hr.customers"
    assert table["cells_per_version"] == [{"version": 1, "cells": 6 * len(PII_COLUMNS)}]

    # The CLI prints the same document; it holds no key, wrapped or plain.
    cli = ["--catalog", settings.catalog, "--schemas", "hr", "--kek-backend", "local",
           "--local-kek-file", settings.option("local-kek-file")]
    assert status.main([*cli, "--format", "json", "--tables", "hr.customers"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["scopes"] == document["scopes"]
    with build_context(settings, spark) as ctx:
        deks = ctx.keyring.deks(settings.scope("hr"))
        wrapped = [r.wrapped.blob for r in ctx.store.current()]
    for secret in [k.reveal() for k in deks.values()] + wrapped:
        for form in (secret.hex(), base64.b64encode(secret).decode()):
            assert form not in printed


def test_status_reports_an_edited_keyring_instead_of_its_states(settings, spark):
    kek_setup.run(settings, spark)
    dek_generation.run(settings, spark, schema="hr")
    retire_dek.run(settings, spark, schema="hr", version=1, tables=[], force=True)
    with build_context(settings, spark) as ctx:
        scope = settings.scope("hr")
        (v1,) = [r for r in ctx.store.current(scope) if r.version == 1]
        # Someone with write access re-enables the retired version by appending a revision
        # without the keyring's tag.
        ctx.store.append(v1.next_revision("intruder", state=DekState.ENABLED))
    document = json.loads(status.run(settings, spark, output_format="json"))
    (found,) = [s for s in document["scopes"] if s["scope"] == scope]
    assert found["problem"] and found["versions"] == []
    text = status.run(settings, spark)
    assert f"DEKs of {scope}: NOT VERIFIED" in text
    assert f"DEK {scope} v1 (active)" not in text and f"DEK {scope} v1:" not in text


def test_status_refuses_an_unknown_format(settings, spark):
    from envelope_encryption.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --format"):
        status.run(settings, spark, output_format="yaml")


def _rows(spark, settings, table):
    from envelope_encryption.lakehouse import Lakehouse

    name = Lakehouse(databricks=False).table(settings.catalog, settings.crypto_schema, table)
    return [r.asDict() for r in spark.table(name).collect()]


def test_write_inventory_appends_one_snapshot_per_run_of_what_status_reports(
        settings, spark, tmp_path, capsys):
    from envelope_encryption.jobs.inventory_tables import CELL_INVENTORY, KEY_INVENTORY

    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(3), landing / "a.csv")
    _encrypt(settings, spark, landing)
    run_settings = Settings(catalog=settings.catalog, schemas=settings.schemas,
                            options={**settings.options, "run-id": "9001"})
    document = json.loads(status.run(run_settings, spark, tables=["hr.customers"],
                                     output_format="json", write_inventory=True))
    keys = _rows(spark, settings, KEY_INVENTORY)
    (scope,) = document["scopes"]
    (version,) = scope["versions"]
    (row,) = keys
    assert row["run_id"] == "9001" and row["problem"] == "" and row["age_days"] == 0
    assert {k: row[k] for k in ("scope", "version", "state", "active", "key_type", "kek_id",
                                "kek_version", "created_by")} \
        == {"scope": scope["scope"], **{k: version[k] for k in (
            "version", "state", "active", "key_type", "kek_id", "kek_version", "created_by")}}
    assert [(r["table_name"], r["version"], r["legacy"], r["cells"])
            for r in _rows(spark, settings, CELL_INVENTORY)] \
        == [(f"{settings.catalog}.hr.customers", 1, False, 3 * len(PII_COLUMNS))]

    # Without the flag nothing is written; the CLI's flag appends a second snapshot.
    status.run(settings, spark, tables=["hr.customers"])
    assert len(_rows(spark, settings, KEY_INVENTORY)) == 1
    cli = ["--catalog", settings.catalog, "--schemas", "hr", "--kek-backend", "local",
           "--local-kek-file", settings.option("local-kek-file")]
    assert status.main([*cli, "--tables", "hr.customers", "--write-inventory", "true"]) == 0
    capsys.readouterr()
    keys = _rows(spark, settings, KEY_INVENTORY)
    assert len(keys) == 2 and len({r["snapshot_time"] for r in keys}) == 2
    assert len(_rows(spark, settings, CELL_INVENTORY)) == 2

    # No key of any kind in any row.
    with build_context(settings, spark) as ctx:
        secrets = [k.reveal() for k in ctx.keyring.deks(settings.scope("hr")).values()]
        secrets += [r.wrapped.blob for r in ctx.store.current()]
    stored = json.dumps(keys + _rows(spark, settings, CELL_INVENTORY), default=str)
    for secret in secrets:
        for form in (secret.hex(), base64.b64encode(secret).decode()):
            assert form not in stored


def test_inventory_rows_flag_legacy_cells_and_report_an_unverified_scope():
    from datetime import datetime, timedelta, timezone

    from envelope_encryption.jobs.status import cell_rows, key_rows

    now = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    created = (now - timedelta(days=40, hours=1)).isoformat()
    version = status.DekVersionInfo(
        version=3, state="ENABLED", active=True, key_type="aes-256", revision=1,
        kek_id="kek", kek_version="2", created_at=created, created_by="admin",
        modified_at=created, modified_by="admin")
    found = status.Inventory(
        kek="kek", kek_problem="", keyring="keyring",
        scopes=[status.ScopeInfo("c.hr", versions=[version]),
                status.ScopeInfo("c.sales", problem="record 1 does not verify")],
        tables=[status.TableInfo("c.hr.t", {3: 5}, {1: 7})])
    keys = list(key_rows(found, now, "1"))
    assert [(r["scope"], r["version"], r["age_days"], r["problem"]) for r in keys] == [
        ("c.hr", 3, 40, ""), ("c.sales", None, None, "record 1 does not verify")]
    assert [(r["table_name"], r["version"], r["legacy"], r["cells"])
            for r in cell_rows(found, now, "1")] == [("c.hr.t", 3, False, 5),
                                                     ("c.hr.t", 1, True, 7)]


def test_write_inventory_refuses_a_value_that_is_not_true_or_false():
    with pytest.raises(SystemExit):
        status.build_parser().parse_args(["--write-inventory", "maybe"])
