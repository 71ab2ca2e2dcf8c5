"""encrypt_columns on file sources: read by checkpoint (only new files), each batch written
once (also when a crash cut a run short), the schema recorded at the first run, backfill of
a target filled by file tracking, and checked parameters."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from envelope_encryption.config import Settings
from envelope_encryption.errors import ConfigError
from envelope_encryption.jobs import encrypt_columns, ingest_sink, kek_setup
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_source import (
    SCHEMA_FILE,
    parse_source_schema,
    validate_checkpoint,
)
from envelope_encryption.jobs.ingest_stream import IngestFailed
from envelope_encryption.spark.columns import TableRef, decrypt_columns
from envelope_encryption.spark.columns import encrypt_columns as encrypt_df

FILES = 120


@pytest.fixture()
def settings(tmp_path):
    settings = Settings(catalog=f"s{uuid.uuid4().hex[:8]}", schemas=("hr",),
                        options={"local-kek-file": str(tmp_path / "kek.key")})
    return settings


def _land(folder: Path, name: str, rows: list[tuple[int, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,name"] + [f"{i},{n}" for i, n in rows]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run(settings, spark, landing, checkpoint, **kw):
    return encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                               target_table="hr.people", columns=["name"],
                               checkpoint_location=str(checkpoint), **kw)


def _plain(settings, spark) -> list[tuple[int, str]]:
    ctx = build_context(settings, spark)
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "people"))
    plain = decrypt_columns(stored, ["name"], keyring=ctx.keyring,
                            table=TableRef(settings.catalog, "hr", "people"))
    return sorted((r["id"], r["name"]) for r in plain.collect())


def test_a_rerun_reads_only_the_new_file(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    for n in range(FILES):
        _land(landing, f"f{n:04d}.csv", [(2 * n, f"a{n}"), (2 * n + 1, f"b{n}")])
    first = _run(settings, spark, landing, checkpoint)
    assert (first.files_read, first.rows_written, first.rows_skipped) == (FILES, 2 * FILES, 0)
    _land(landing, "new.csv", [(10_000, "new")])
    # Landed late with an old modification time kept (cp -p, rsync -t): still new.
    sixty_days_ago = time.time() - 60 * 86_400
    os.utime(landing / "new.csv", (sixty_days_ago, sixty_days_ago))
    again = _run(settings, spark, landing, checkpoint)
    # Only the new file is read: the checkpoint holds the 120 others.
    assert (again.files_read, again.rows_written, again.rows_skipped) == (1, 1, 0)
    nothing = _run(settings, spark, landing, checkpoint)
    assert (nothing.files_read, nothing.rows_written) == (0, 0)
    rows = _plain(settings, spark)
    assert len(rows) == 2 * FILES + 1 and len({i for i, _ in rows}) == len(rows)
    assert (10_000, "new") in rows and (0, "a0") in rows
    assert (checkpoint / SCHEMA_FILE).is_file()


def test_a_batch_written_before_a_crash_is_not_written_again(settings, spark, tmp_path,
                                                           monkeypatch):
    kek_setup.run(settings, spark)
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    _land(landing, "a.csv", [(1, "Ada"), (2, "Alan")])
    assert _run(settings, spark, landing, checkpoint).rows_written == 2
    # A crash after the write, before Spark recorded the batch's commit: the batch replays.
    for name in ("0", ".0.crc"):
        (checkpoint / "commits" / name).unlink(missing_ok=True)
    replay = _run(settings, spark, landing, checkpoint)
    assert (replay.rows_written, replay.batches_replayed) == (0, 1)
    assert _plain(settings, spark) == [(1, "Ada"), (2, "Alan")]

    # A crash after the batch's files were moved into the table, before its marker.
    _land(landing, "b.csv", [(3, "Grace")])
    real_replace = ingest_sink.os.replace

    def crash_on_marker(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("simulated crash before the commit marker")
        return real_replace(src, dst)

    monkeypatch.setattr(ingest_sink.os, "replace", crash_on_marker)
    with pytest.raises(IngestFailed):
        _run(settings, spark, landing, checkpoint)
    monkeypatch.setattr(ingest_sink.os, "replace", real_replace)
    staged = list((checkpoint / ingest_sink.TXN_FOLDER).glob("*.staged"))
    assert len(staged) == 1 and (staged[0] / "_SUCCESS").is_file()
    resumed = _run(settings, spark, landing, checkpoint)
    # The staged batch is finished, not encrypted and written a second time.
    assert resumed.rows_written == 1
    assert _plain(settings, spark) == [(1, "Ada"), (2, "Alan"), (3, "Grace")]
    assert not list((checkpoint / ingest_sink.TXN_FOLDER).glob("*.staged"))


def test_the_schema_of_the_first_run_is_kept(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    landing.mkdir()
    (landing / "a.csv").write_text("id,name,code,amount\n1,Ada,A1,1.5\n")
    common = dict(source=str(landing), source_format="csv", target_table="hr.codes",
                  columns=["name", "code"], checkpoint_location=str(checkpoint))
    encrypt_columns.run(settings, spark, **common)
    recorded = json.loads((checkpoint / SCHEMA_FILE).read_text())
    assert [(f["name"], f["type"]) for f in recorded["fields"]] == [
        ("id", "integer"), ("name", "string"), ("code", "string"), ("amount", "double")]
    # A later file whose rows look like integers: inference would make code an int and
    # drop its leading zeros; the recorded schema keeps it a string, byte for byte.
    (landing / "b.csv").write_text("id,name,code,amount\n2,Alan,007,2\n")
    assert encrypt_columns.run(settings, spark, **common).rows_written == 1
    ctx = build_context(settings, spark)
    ref = TableRef(settings.catalog, "hr", "codes")
    stored = spark.table(ctx.lakehouse.table(settings.catalog, "hr", "codes"))
    plain = {r["id"]: r for r in decrypt_columns(stored, ["name", "code"], keyring=ctx.keyring,
                                                 table=ref).collect()}
    assert plain[2]["code"] == "007" and plain[2]["amount"] == 2.0
    assert dict(stored.dtypes)["amount"] == "double"

    # A value that does not fit the recorded type fails the run (never a silent NULL), and
    # the error quotes no value of the file.
    (landing / "c.csv").write_text("id,name,code,amount\nnot-a-number,SECRET-NAME-42,X,3\n")
    with pytest.raises(IngestFailed) as failure:
        encrypt_columns.run(settings, spark, **common)
    assert "SECRET-NAME-42" not in str(failure.value)
    assert stored.count() == 2
    # Fixed in place, the replayed batch goes through.
    (landing / "c.csv").write_text("id,name,code,amount\n3,Grace,X,3\n")
    assert encrypt_columns.run(settings, spark, **common).rows_written == 1
    assert spark.table(ctx.lakehouse.table(settings.catalog, "hr", "codes")).count() == 3

    with pytest.raises(ConfigError, match="differs from the schema recorded"):
        encrypt_columns.run(settings, spark, **common, source_schema="id BIGINT, name STRING, "
                                                                     "code STRING, amount DOUBLE")


def test_first_run_on_a_target_filled_by_file_tracking_skips_its_files(settings, spark,
                                                                       tmp_path):
    """Backfill: the earlier mode kept each row's file in _source_file; switching to the
    checkpoint duplicates nothing."""
    from pyspark.sql import functions as F

    kek_setup.run(settings, spark)
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    for n in range(5):
        _land(landing, f"old{n}.csv", [(n, f"old{n}")])
    # What the file-tracking mode wrote: a batch read, the file's path, one INSERT.
    ctx = build_context(settings, spark)
    ref = TableRef(settings.catalog, "hr", "people")
    old = (spark.read.option("header", True).option("inferSchema", True).csv(str(landing))
           .withColumn("_source_file", F.col("_metadata.file_path")))
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {ctx.lakehouse.schema(settings.catalog, 'hr')}")
    table = ctx.lakehouse.table(settings.catalog, "hr", "people")
    spark.sql(f"CREATE TABLE {table} (id INT, name STRING, _source_file STRING)")
    encrypt_df(old, ["name"], keyring=ctx.keyring, table=ref).write.insertInto(table)
    _land(landing, "new.csv", [(100, "new")])

    report = _run(settings, spark, landing, checkpoint)
    assert (report.files_read, report.rows_written, report.rows_skipped) == (6, 1, 5)
    assert _plain(settings, spark) == [*[(n, f"old{n}") for n in range(5)], (100, "new")]
    assert _run(settings, spark, landing, checkpoint).files_read == 0


def test_bad_parameters_are_refused(settings, spark, tmp_path):
    landing = tmp_path / "landing"
    _land(landing, "a.csv", [(1, "Ada")])
    with pytest.raises(ConfigError, match="overlaps the source folder"):
        validate_checkpoint(str(landing / "ck"), str(landing), databricks=False)
    with pytest.raises(ConfigError, match="must not contain"):
        validate_checkpoint("/tmp/a/../b", str(landing), databricks=False)
    with pytest.raises(ConfigError, match="volume path"):
        validate_checkpoint("/tmp/ck", "/Volumes/c/s/v/landing", databricks=True)
    assert validate_checkpoint("/Volumes/c/s/v/ck/", "/Volumes/c/s/v/landing",
                               databricks=True) == "/Volumes/c/s/v/ck"
    with pytest.raises(ConfigError, match="not a valid DDL"):
        parse_source_schema("id INT, name")
    assert parse_source_schema("id BIGINT, name STRING").names == ["id", "name"]
    kek_setup.run(settings, spark)
    with pytest.raises(ConfigError, match="for file sources"):
        encrypt_columns.run(settings, spark, source="hr.x", source_format="table",
                            target_table="hr.y", columns=["a"], id_column="id",
                            checkpoint_location=str(tmp_path / "ck"))
    args = encrypt_columns.build_parser().parse_args(
        ["--source", "x", "--target-table", "hr.t", "--columns", "a",
         "--checkpoint-location", "/tmp/ck", "--source-schema", "a STRING"])
    assert (args.checkpoint_location, args.source_schema) == ("/tmp/ck", "a STRING")


def test_default_checkpoint_is_under_the_local_state(settings, spark, tmp_path):
    kek_setup.run(settings, spark)
    landing = tmp_path / "landing"
    _land(landing, "a.csv", [(1, "Ada")])
    encrypt_columns.run(settings, spark, source=str(landing), source_format="csv",
                        target_table="hr.people", columns=["name"])
    warehouse = Path(spark.conf.get("spark.sql.warehouse.dir").removeprefix("file:"))
    checkpoint = warehouse.parent / "checkpoints" / settings.catalog / "hr" / "people"
    assert (checkpoint / SCHEMA_FILE).is_file() and (checkpoint / "commits").is_dir()
    shutil.rmtree(checkpoint)
