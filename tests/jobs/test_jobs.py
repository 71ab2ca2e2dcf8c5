"""The jobs on local Spark: idempotency, atomic failure, the local runner, and that no
plaintext key reaches a log line or the console."""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError, KeyringError
from envelope_encryption.jobs import dek_generation, encrypt_columns, kek_setup, rotate_kek
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.local_run import run_job
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.spark.columns import TableRef, decrypt_columns

ROOT = Path(__file__).parents[2]


@pytest.fixture()
def settings(tmp_path):
    return Settings(
        catalog=f"j{uuid.uuid4().hex[:8]}", schemas=("hr", "sales"),
        options={"local-kek-file": str(tmp_path / "kek.key")},
    )


def _encrypt(settings, spark, landing, **kw):
    return encrypt_columns.run(
        settings, spark, source=str(landing), source_format="csv",
        target_table="hr.customers", columns=list(PII_COLUMNS), **kw,
    )


def test_kek_setup_is_idempotent(settings, spark):
    first = kek_setup.run(settings, spark)
    assert first.kek.created and len(first.created_deks) == 2
    second = kek_setup.run(settings, spark)
    assert not second.kek.created and second.created_deks == []
    assert sorted(second.existing_deks) == [f"{settings.catalog}.hr v1",
                                            f"{settings.catalog}.sales v1"]


def test_encrypt_job_adds_nothing_on_rerun_and_reads_back(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(30, first_id=1), landing / "a.csv")
    report = _encrypt(settings, spark, landing)
    assert (report.rows_written, report.rows_skipped, report.dek_version) == (30, 0, 1)
    assert report.files_read == 1
    # The checkpoint has read a.csv: a re-run reads no file and adds nothing.
    again = _encrypt(settings, spark, landing)
    assert (again.rows_written, again.rows_skipped, again.files_read) == (0, 0, 0)
    dek_generation.run(settings, spark, schema="hr")
    write_csv(customers(10, first_id=31), landing / "b.csv")
    third = _encrypt(settings, spark, landing)
    assert (third.rows_written, third.dek_version, third.files_read) == (10, 2, 1)

    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "customers"))
    assert stored.count() == 40
    plain = decrypt_columns(stored, list(PII_COLUMNS), keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "customers"))
    expected = {r["id"]: r for r in customers(30, 1) + customers(10, 31)}
    for row in plain.collect():
        assert row["ssn"] == expected[row["id"]]["ssn"]
        assert row["email"] == expected[row["id"]]["email"]
        assert str(row["birth_date"]) == expected[row["id"]]["birth_date"]


def test_failed_run_leaves_the_target_as_it_was(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    spark.createDataFrame([(1, "Ada")], "id int, name string").write.parquet(
        str(landing / "good"))
    common = dict(source=str(landing / "good"), source_format="parquet",
                  target_table="hr.people", columns=["name"])
    assert encrypt_columns.run(settings, spark, **common).rows_written == 1
    # A second landing folder with one good file and one corrupt file: the read fails in
    # the middle of the INSERT.
    mixed = landing / "mixed"
    spark.createDataFrame([(2, "Grace")], "id int, name string").write.parquet(str(mixed))
    (mixed / "part-99999-corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(Exception):
        encrypt_columns.run(settings, spark, **{**common, "source": str(mixed)})
    ctx = build_context(settings, spark)
    table = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "people"))
    assert [r["id"] for r in table.collect()] == [1]


def test_encrypt_job_refuses_bad_parameters(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    with pytest.raises(ConfigError, match="needs --id-column"):
        encrypt_columns.run(settings, spark, source="hr.x", source_format="table",
                            target_table="hr.y", columns=["a"])
    with pytest.raises(ConfigError, match="unknown --source-format"):
        encrypt_columns.run(settings, spark, source=str(tmp_path), source_format="xml",
                            target_table="hr.y", columns=["a"])
    with pytest.raises(ConfigError, match="invalid table"):
        encrypt_columns.run(settings, spark, source=str(tmp_path), source_format="csv",
                            target_table="hr.y;drop", columns=["a"])
    landing = tmp_path / "l"
    write_csv(customers(2), landing / "a.csv")
    with pytest.raises(KeyringError, match="no active DEK"):
        encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                            target_table="nokeys.t", columns=["ssn"])


def test_rotate_kek_job_rewraps_and_resumes(settings, spark):
    kek_setup.run(settings, spark)
    report = rotate_kek.run(settings, spark)
    assert report.kek.kek_version == "2" and len(report.rewrapped) == 2
    # Everything current: a re-run rotates again (a new KEK version) and re-wraps.
    assert rotate_kek.run(settings, spark).kek.kek_version == "3"
    # rewrap-only never rotates.
    assert rotate_kek.run(settings, spark, rewrap_only=True).rewrapped == []


def test_local_runner_runs_bundle_jobs(settings, spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    landing = tmp_path / "landing"
    write_csv(customers(5), landing / "a.csv")
    overrides = {
        "catalog": settings.catalog, "schemas": "hr",
        "local_kek_file": settings.options["local-kek-file"],
        "target_table": "hr.customers", "mask_columns": "false",
    }
    # Per-run inputs are job parameters, given as `databricks bundle run --params` gives them.
    params = {"encrypt_columns": {"source": str(landing)}, "dek_generation": {"schema": "hr"}}
    for job in ("kek_setup", "encrypt_columns", "dek_generation", "rotate_kek"):
        assert run_job(job, "local", overrides, root=ROOT, params=params.get(job)) == 0, job
    out = capsys.readouterr().out
    assert "5 row(s) written" in out and f"DEK {settings.catalog}.hr v2 created" in out
    with pytest.raises(ConfigError, match="unknown job"):
        run_job("nope", "local", overrides, root=ROOT)
    # A task that fails makes the run fail with the entry point's exit status.
    assert run_job("dek_generation", "local", overrides, root=ROOT,
                   params={"schema": "bad;schema"}) == 2


def test_no_plaintext_key_in_logs_or_console(settings, spark, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    landing = tmp_path / "landing"
    write_csv(customers(5), landing / "a.csv")
    kek_setup.run(settings, spark)
    _encrypt(settings, spark, landing)
    dek_generation.run(settings, spark, schema="hr")
    rotate_kek.run(settings, spark)
    ctx = build_context(settings, spark)
    keys = [k.reveal() for k in ctx.keyring.deks(f"{settings.catalog}.hr").values()]
    kek_file = Path(settings.options["local-kek-file"]).read_text().split()
    keys += [bytes.fromhex(h) for h in kek_file[1::2]]
    seen = caplog.text + "".join(capsys.readouterr())
    for record in ctx.store.history():
        seen += repr(record)
    for key in keys:
        for form in (key.hex(), base64.b64encode(key).decode(), repr(key)):
            assert form not in seen


def test_reencrypt_status_and_retire(settings, spark, tmp_path):
    from envelope_encryption.jobs import reencrypt_columns, retire_dek, status

    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    write_csv(customers(8), landing / "a.csv")
    _encrypt(settings, spark, landing)
    dek_generation.run(settings, spark, schema="hr")
    write_csv(customers(4, first_id=9), landing / "b.csv")
    _encrypt(settings, spark, landing)

    table = "hr.customers"
    with pytest.raises(KeyringError, match="still use it"):
        retire_dek.run(settings, spark, schema="hr", version=1, tables=[table])
    report = reencrypt_columns.run(settings, spark, table=table, columns=list(PII_COLUMNS))
    assert report.before == {1: 8 * 5, 2: 4 * 5} and report.after == {2: 12 * 5}
    text = status.run(settings, spark, tables=[table])
    assert f"DEK {settings.catalog}.hr v2 (active)" in text and "{2: 60}" in text
    retired = retire_dek.run(settings, spark, schema="hr", version=1, tables=[table])
    assert retired.state.value == "RETIRED"

    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "customers"))
    plain = decrypt_columns(stored, list(PII_COLUMNS), keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "customers"))
    expected = {r["id"]: r["ssn"] for r in customers(8) + customers(4, first_id=9)}
    assert {r["id"]: r["ssn"] for r in plain.collect()} == expected
