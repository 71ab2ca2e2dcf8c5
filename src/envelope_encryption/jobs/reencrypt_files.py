"""Local parquet tables: re-encryption by file, each file swapped in by one atomic rename,
through a redo journal in ``<table folder>/_reencrypt/`` (Spark skips ``_`` folders).

A batch is a group of the table's files holding pending rows (:mod:`.reencrypt_batches`),
about ``batch_rows`` pending rows in all (a file is never split: a file with more pending
rows is a batch of its own). For each batch:

1. **stage**: every row of those files, re-encrypted, written to ``_reencrypt/<batch>.staged/``,
   one file per source file (Spark marks the write complete); each staged file must have its
   source's number of rows, and the batch its rows and non-NULL values (the count check of
   :func:`~envelope_encryption.spark.cells_guard.checked_rewrite`);
2. **record**: ``_reencrypt/<batch>.json`` (written whole or not at all) lists each staged
   file, the file it replaces, and that file's size and modification time;
3. **swap**: each staged file is renamed over the file it replaces (atomic per file: a reader
   sees the old rows or the new, never both, never neither);
4. **done**: the record and the staging folder are removed.

A run first finishes what a killed run left: a batch with a record is swapped to the end
(a file whose staged copy is gone was swapped already; a file that changed since it was
staged is left as it is and its copy dropped); staging without a record is dropped (the old
files were never touched). Then it plans again from the predicate, which no longer selects
what was swapped. The journal's lock (``_reencrypt/_lock``) keeps a second run waiting.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, EnvelopeError
from ..identifiers import quote
from ..spark.columns import TableRef
from .common import JobContext, log
from .ingest_sink import checkpoint_lock, table_location, write_json_atomically
from .reencrypt_batches import BatchProgress, Pending, Rewrite, batch_census

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JOURNAL_FOLDER = "_reencrypt"
_FILE = "__envelope_file"  # the source file's number within its batch
_PATH = "__envelope_path"


class RewriteMismatch(EnvelopeError):
    """A staged file does not hold its source file's rows: the batch is not committed."""


def _local(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


def _write_record(journal: Path, batch: str, entries: list[dict]) -> Path:
    record = journal / f"{batch}.json"
    write_json_atomically(record, {"batch": batch, "files": entries})
    return record


def _swap(entry: dict) -> bool:
    """Put one staged file in place of its source; False when it was swapped already or the
    source changed since it was staged (then the staged copy is not used)."""
    staged, target = Path(entry["staged"]), Path(entry["target"])
    if not staged.is_file():
        return False
    stat = target.stat() if target.is_file() else None
    if stat is None or (stat.st_size, stat.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
        log.warning("re-encrypt: %s changed since its rewrite was staged; the staged copy is "
                    "dropped and the file is planned again", target.name)
        staged.unlink()
        return False
    # Hadoop's local file system checks a file against its ".<name>.crc" when there is one:
    # the old file's would refuse the new content. Without it the file is read unchecked
    # (parquet has its own page checksums), so removing it first leaves every state readable.
    target.with_name(f".{target.name}.crc").unlink(missing_ok=True)
    os.replace(staged, target)
    return True


def _finish(record: Path) -> None:
    record.unlink()
    shutil.rmtree(record.with_suffix(".staged"), ignore_errors=True)


def recover(journal: Path) -> int:
    """Finish the batches a killed run recorded, drop what it only staged; returns the
    number of files swapped."""
    swapped = 0
    for record in sorted(journal.glob("*.json")):
        entries = json.loads(record.read_text())["files"]
        swapped += sum(_swap(entry) for entry in entries)
        _finish(record)
        log.info("re-encrypt: finished batch %s of an earlier run", record.stem)
    for leftover in [*journal.glob("*.staged"), *journal.glob("*.partial")]:
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return swapped


def _plan(spark: SparkSession, storage: str, pending: Pending,
          batch_rows: int) -> list[list[tuple[str, int]]]:
    """Files with pending rows (as read, with their count), grouped into batches."""
    from pyspark.sql import functions as F

    per_file = (spark.table(storage).where(pending.predicate())
                .groupBy(F.col("_metadata.file_path").alias("file")).count().collect())
    batches: list[list[tuple[str, int]]] = [[]]
    rows = 0
    for row in sorted(per_file, key=lambda r: r["file"]):
        if batches[-1] and rows + row["count"] > batch_rows:
            batches.append([])
            rows = 0
        batches[-1].append((row["file"], row["count"]))
        rows += row["count"]
    return [b for b in batches if b]


def _stage(spark: SparkSession, storage: str, name: str, pending: Pending,
           files: list[tuple[str, int]], staging: Path, rewrite: Rewrite) -> list[dict]:
    """Write every row of ``files`` re-encrypted to ``staging``, one file per source file;
    returns the journal entries (staged file, source file, source size and time)."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from ..spark.cells_guard import checked_rewrite

    numbers = spark.createDataFrame([(f, i) for i, (f, _) in enumerate(files)],
                                    f"{_PATH} string, {_FILE} int")
    schema = spark.table(storage).schema
    rows = (spark.read.schema(schema).parquet(*[f for f, _ in files])
            .withColumn(_PATH, F.col("_metadata.file_path"))
            .join(F.broadcast(numbers), _PATH).drop(_PATH))
    seen, per_file = batch_census(rows, name, pending.columns, by=_FILE)
    # One task per source file, so that each source file becomes exactly one staged file.
    moved = checked_rewrite(spark, rewrite(rows.repartition(len(files), _FILE)), seen,
                            "_reencrypt_files")
    (moved.write.option("maxRecordsPerFile", 0).partitionBy(_FILE)
     .parquet(staging.as_uri()))
    entries = []
    for number, (uri, _) in enumerate(files):
        staged = sorted((staging / f"{_FILE}={number}").glob("part-*"))
        counts = [pq.ParquetFile(p).metadata.num_rows for p in staged]
        if len(staged) != 1 or counts[0] != per_file.get(number):
            raise RewriteMismatch(
                f"{name}: the rewrite of one of its files has {sum(counts)} rows in "
                f"{len(staged)} file(s), not {per_file.get(number)} rows in one; nothing of "
                "this batch was committed")
        target = _local(uri)
        stat = target.stat()
        entries.append({"staged": str(staged[0]), "target": str(target),
                        "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return entries


def local_file_batches(spark: SparkSession, storage: str, name: str, pending: Pending,
                       batch_rows: int, rewrite: Rewrite) -> BatchProgress:
    """Re-encrypt the pending rows of a local parquet table, file by file, resumably."""
    plain = storage.replace("`", "")
    if any(c.isPartition for c in spark.catalog.listColumns(plain)):
        raise ConfigError(f"{name}: local re-encryption rewrites unpartitioned parquet "
                          "tables only (use --mode whole for a partitioned one)")
    journal = table_location(spark, storage) / JOURNAL_FOLDER
    journal.mkdir(exist_ok=True)
    with checkpoint_lock(str(journal), job="reencrypt_columns"):
        if recover(journal):
            spark.catalog.refreshTable(plain)
        plan = _plan(spark, storage, pending, batch_rows)
        progress = BatchProgress(name, sum(n for b in plan for _, n in b), len(plan))
        run = f"{time.time_ns():x}"  # batch names of this run sort after earlier runs'
        for number, files in enumerate(plan):
            batch = f"{run}-{number:06d}"
            staging = journal / f"{batch}.staged"
            entries = _stage(spark, storage, name, pending, files, staging, rewrite)
            record = _write_record(journal, batch, entries)
            for entry in entries:
                _swap(entry)
            _finish(record)
            spark.catalog.refreshTable(plain)
            progress.batch_done(sum(n for _, n in files))
        return progress


def rewrite_whole(ctx: JobContext, ref: TableRef, moved: DataFrame, name: str) -> None:
    """Replace the table's rows by ``moved`` in one step (``reencrypt_columns --mode whole``):
    on Databricks one ``INSERT OVERWRITE``; locally a staging table swapped in by rename."""
    # Masks apply to reads only: the rows are written where they are stored.
    storage = ctx.lakehouse.storage_table(ctx.spark, ref.catalog, ref.schema, ref.table)
    if ctx.lakehouse.databricks:
        # One statement, one Delta commit; the count check fails it before it commits.
        view = f"_reencrypted_{name}"
        moved.createOrReplaceTempView(view)
        ctx.spark.sql(f"INSERT OVERWRITE {storage} SELECT * FROM {quote(view)}")
        return
    # Parquet cannot overwrite a table it is reading: stage, then swap by rename.
    stored = storage.rsplit(".", 1)[1].strip("`")
    staging = ctx.lakehouse.table(ref.catalog, ref.schema, f"{stored}__reencrypt")
    backup = ctx.lakehouse.table(ref.catalog, ref.schema, f"{stored}__before_reencrypt")
    ctx.spark.sql(f"DROP TABLE IF EXISTS {staging}")
    moved.write.saveAsTable(staging.replace("`", ""))
    ctx.spark.sql(f"ALTER TABLE {storage} RENAME TO {backup}")
    ctx.spark.sql(f"ALTER TABLE {staging} RENAME TO {storage}")
    ctx.spark.sql(f"DROP TABLE {backup}")
