"""Batched re-encryption on local Spark: which rows the version-prefix predicate selects,
progress and report, files without older cells left untouched, the journal's recovery,
the whole-table mode and the options' checks. (Killed runs: test_reencrypt_resume.py.)"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import dek_generation, encrypt_columns, kek_setup, reencrypt_columns
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_sink import table_location
from envelope_encryption.jobs.reencrypt_batches import pending_cells
from envelope_encryption.jobs.reencrypt_files import recover
from envelope_encryption.jobs.sample_data import PII_COLUMNS, customers, write_csv
from envelope_encryption.spark.columns import TableRef, decrypt_columns


@pytest.fixture()
def settings(tmp_path):
    return Settings(catalog=f"b{uuid.uuid4().hex[:8]}", schemas=("hr",),
                    options={"local-kek-file": str(tmp_path / "kek.key")})


def _two_versions(settings, spark, tmp_path, old_files: int = 3) -> None:
    """hr.customers: 4 rows per file; ``old_files`` files under v1, then one under v2."""
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    for n in range(old_files):
        write_csv(customers(4, first_id=1 + 4 * n), landing / f"a{n}.csv")
        _encrypt(settings, spark, landing)
    dek_generation.run(settings, spark, schema="hr")
    write_csv(customers(4, first_id=1 + 4 * old_files), landing / "b.csv")
    _encrypt(settings, spark, landing)


def _encrypt(settings, spark, landing):
    encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                        target_table="hr.customers", columns=list(PII_COLUMNS))


def _table(settings) -> str:
    return f"{settings.catalog}__hr.customers"


def test_the_predicate_selects_rows_by_version_prefix(spark):
    values = [("a", "ee1:1:string:AAAA", None), ("b", "ee1:10:string:AAAA", "ee1:2:int:AAAA"),
              ("c", "ee1:2:string:AAAA", "ee1:2:string+row:AAAA"), ("d", None, "bGVnYWN5"),
              ("e", "ee1:3:string:AAAA", None)]
    df = spark.createDataFrame(values, "id STRING, x STRING, y STRING")

    def selected(**kw) -> list[str]:
        pending = pending_cells(["x", "y"], 2, kw.pop("found"), **kw)
        return sorted(r["id"] for r in df.where(pending.predicate()).collect())

    # v1 is not v10, and cells of a version the table does not hold are not looked for.
    assert selected(found=[1, 2], legacy=False, bind_rows=False) == ["a"]
    assert selected(found=[1, 2, 3, 10], legacy=False, bind_rows=False) == ["a", "b", "e"]
    # Legacy values carry no header; with bind_rows, unbound cells of v2 are pending too.
    assert selected(found=[2], legacy=True, bind_rows=False) == ["d"]
    assert selected(found=[2], legacy=False, bind_rows=True) == ["b", "c"]
    assert pending_cells(["x"], 2, [2], legacy=False, bind_rows=False).predicate() == "FALSE"
    # A prefix predicate, what Delta's data skipping reads file statistics for.
    assert "startswith(`x`, 'ee1:1:')" in pending_cells(
        ["x"], 2, [1, 2], legacy=False, bind_rows=False).predicate()


def test_batches_rewrite_only_rows_of_older_versions_and_log_progress(settings, spark,
                                                                      tmp_path, caplog):
    _two_versions(settings, spark, tmp_path)
    folder = table_location(spark, _table(settings))
    ctx = build_context(settings, spark)
    stored = spark.table(_table(settings))
    newer = {r["id"]: tuple(r[c] for c in PII_COLUMNS)
             for r in stored.where("ssn LIKE 'ee1:2:%'").collect()}
    untouched = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")
                 if spark.read.parquet(str(p)).where("ssn LIKE 'ee1:2:%'").count()}
    assert len(newer) == 4 and untouched

    with caplog.at_level(logging.INFO, logger="envelope_encryption"):
        report = reencrypt_columns.run(settings, spark, table="hr.customers",
                                       columns=list(PII_COLUMNS), batch_rows=4)
    assert report.before == {1: 60, 2: 20} and report.after == {2: 80}
    assert (report.mode, report.rows_to_do, report.rows_done, report.batches) == (
        "batched", 12, 12, 3)
    lines = [r.getMessage() for r in caplog.records if "committed" in r.getMessage()
             and r.name == "envelope_encryption"]
    assert [line.split(": ", 1)[1] for line in lines] == [
        "batch 1 of 3 committed, 4 rows; 4 of 12 rows done",
        "batch 2 of 3 committed, 4 rows; 8 of 12 rows done",
        "batch 3 of 3 committed, 4 rows; 12 of 12 rows done"]
    assert "12 of 12 rows rewritten in 3 batch(es), mode batched" in str(report)

    # The file of v2 rows was not rewritten; its cells are byte-identical.
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*")
            if p.name in untouched} == untouched
    spark.catalog.refreshTable(_table(settings))
    stored = spark.table(_table(settings))
    assert {r["id"]: tuple(r[c] for c in PII_COLUMNS) for r in stored.collect()
            if r["id"] in newer} == newer
    plain = decrypt_columns(stored, list(PII_COLUMNS), keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "customers"))
    assert {r["id"]: r["ssn"] for r in plain.collect()} == {
        r["id"]: r["ssn"] for n in range(4) for r in customers(4, first_id=1 + 4 * n)}
    assert not list((folder / "_reencrypt").glob("*.json"))

    # A second run finds nothing left and commits nothing.
    again = reencrypt_columns.run(settings, spark, table="hr.customers",
                                  columns=list(PII_COLUMNS))
    assert (again.rows_to_do, again.rows_done, again.batches) == (0, 0, 0)
    assert again.after == {2: 80}


def test_the_whole_table_mode_is_kept(settings, spark, tmp_path):
    _two_versions(settings, spark, tmp_path, old_files=1)
    report = reencrypt_columns.run(settings, spark, table="hr.customers",
                                   columns=list(PII_COLUMNS), mode="whole")
    assert report.after == {2: 40} and (report.mode, report.rows_done, report.batches) == (
        "whole", 8, 1)


def test_bad_options_are_refused(settings, spark):
    with pytest.raises(ConfigError, match="--batch-rows must be at least 1"):
        reencrypt_columns.run(settings, spark, table="hr.customers", columns=["ssn"],
                              batch_rows=0)
    with pytest.raises(ConfigError, match="--mode must be one of"):
        reencrypt_columns.run(settings, spark, table="hr.customers", columns=["ssn"],
                              mode="all")
    with pytest.raises(SystemExit):
        reencrypt_columns.build_parser().parse_args(
            ["--table", "t", "--columns", "c", "--mode", "all"])


def _record(journal: Path, batch: str, target: Path, staged_text: bytes) -> Path:
    staged = journal / f"{batch}.staged" / "__envelope_file=0" / "part-0.parquet"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(staged_text)
    stat = target.stat()
    (journal / f"{batch}.json").write_text(json.dumps({"batch": batch, "files": [
        {"staged": str(staged), "target": str(target), "size": stat.st_size,
         "mtime_ns": stat.st_mtime_ns}]}))
    return staged


def test_recovery_swaps_recorded_batches_and_drops_the_rest(tmp_path):
    journal = tmp_path / "_reencrypt"
    journal.mkdir()
    kept, changed = tmp_path / "part-a.parquet", tmp_path / "part-b.parquet"
    kept.write_bytes(b"old a")
    changed.write_bytes(b"old b")
    _record(journal, "1-000000", kept, b"new a")
    _record(journal, "1-000001", changed, b"new b")
    changed.write_bytes(b"changed since")  # another writer: its staged copy is stale
    os.utime(changed, ns=(1, 1))
    (journal / "1-000002.staged").mkdir()  # staged, never recorded: dropped
    (journal / "1-000003.partial").write_text("{")

    assert recover(journal) == 1
    assert kept.read_bytes() == b"new a" and changed.read_bytes() == b"changed since"
    assert list(journal.iterdir()) == []
    assert recover(journal) == 0  # nothing left to finish
