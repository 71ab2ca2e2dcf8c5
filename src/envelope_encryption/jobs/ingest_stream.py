"""File sources of ``encrypt_columns``: read by checkpoint, encrypt and write each batch once.

One run is a Structured Streaming query with ``trigger(availableNow=True)``: it reads every
file the checkpoint has not seen (Auto Loader on Databricks, Spark's file source locally, the
same reader options and schema, :mod:`.ingest_source`), in one or more micro-batches, and
stops. ``foreachBatch`` encrypts each batch with :func:`~..spark.columns.encrypt_columns`
and appends it through :mod:`.ingest_sink`, which writes a batch exactly once even when the
query replays it. Every row keeps its file's path in ``_source_file``.

Backfill: a target filled by the earlier file-tracking mode (every row with its
``_source_file``) gets no duplicates on the first run from a new checkpoint: that run skips
the files whose path the target already holds. Later runs read only new files.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError, EnvelopeError
from ..identifiers import quote
from ..keyring import Keyring
from ..keyring.usage import UsageGuard
from ..spark.columns import TableRef, key_column_text
from ..spark.usage_count import non_null_counts, values_in, values_to_encrypt
from .common import JobContext, log
from .ingest_equality import (
    NO_EQUALITY,
    EqualityColumns,
    domain_usage_guard,
    encrypt_rows,
    reserve_domains,
)
from .ingest_sink import (
    batch_writer,
    checkpoint_has_commits,
    checkpoint_lock,
    transaction_app_id,
)
from .ingest_source import (
    SOURCE_FILE_COLUMN,
    default_checkpoint,
    open_stream,
    source_schema,
    validate_checkpoint,
)
from .ingest_target import EncryptReport, Target, prepare_target, validate_source_fields
from .usage_limits import usage_guard

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from ..keyring.base import DekRecord
    from ..keyring.domains import EqualityDomains
    from ..keyring.subjects import SubjectStore

# Paths of one file as Spark spells them: file:/x, file:///x (local), or a cloud URI.
_LOCAL_URI_PREFIX = r"^file:/+"


class IngestFailed(EnvelopeError):
    """The streaming run stopped on an error (a file that does not fit the schema...)."""


@dataclass
class _Tally:
    rows_read: int = 0
    rows_written: int = 0
    files: set[str] = field(default_factory=set)
    replayed: int = 0
    error: EnvelopeError | None = None
    dek_version: int | None = None  # of the last batch (a rotation on usage changes it)


class SnapshotKeyring(Keyring):
    """The job's keyring, reading each scope's versions once for one unit of work.

    A micro-batch reads the keyring when the usage guard picks its version, then again
    twice in ``encrypt_columns`` (the encrypting DEK, the versions whose cells are kept):
    the same records, a Spark query and an integrity check each time. One snapshot per
    batch reads and verifies them once, at the batch's start; the next batch takes a new
    one, so every batch still sees the keyring as it is then. A new version (a rotation on
    usage) drops the snapshot before and after. It shares the job keyring's DEK cache,
    integrity checker (its KEK id) and audit log: no more key-service calls than the job's.
    """

    def __init__(self, keyring: Keyring) -> None:
        super().__init__(keyring.store, keyring.kek, keyring.actor, keyring.cache,
                         keyring.audit)
        self.integrity = keyring.integrity
        self._versions: dict[str, list[DekRecord]] = {}

    def versions(self, scope: str) -> list[DekRecord]:
        if scope not in self._versions:
            self._versions[scope] = super().versions(scope)
        return list(self._versions[scope])

    def create_version(self, scope: str) -> DekRecord:
        self._versions.pop(scope, None)
        try:
            return super().create_version(scope)
        finally:
            self._versions.pop(scope, None)


def normalized_path(column: Column) -> Column:
    """A file path in one spelling, so paths recorded by either reader compare equal."""
    from pyspark.sql import functions as F

    return F.regexp_replace(column, _LOCAL_URI_PREFIX, "file:///")


def files_in_target(ctx: JobContext, target: Target) -> DataFrame | None:
    """The files a target filled by file tracking already holds (None: not such a target)."""
    from pyspark.sql import functions as F

    stored = ctx.spark.table(target.storage)
    if SOURCE_FILE_COLUMN not in stored.columns:
        return None
    paths = [r[0] for r in stored.select(normalized_path(F.col(SOURCE_FILE_COLUMN)))
             .distinct().collect() if r[0] is not None]
    log.info("backfill: %d file(s) already in %s are skipped", len(paths), target.name)
    return ctx.spark.createDataFrame([(p,) for p in paths], "_ingested_file string")


def ingest_files(ctx: JobContext, ref: TableRef, source: str, source_format: str,
                 columns: Sequence[str], *, id_column: str = "", row_key: str = "",
                 checkpoint_location: str = "", source_schema: str = "",
                 line_separator: str = "auto",
                 equality: EqualityColumns = NO_EQUALITY,
                 subject_column: str = "") -> EncryptReport:
    """Encrypt the files of ``source`` this target's checkpoint has not read yet (and add
    the deterministic cells and blind indexes of ``equality``; ``subject_column``: each row
    under its subject's key, docs/erasure-scopes.md)."""
    from pyspark.errors import StreamingQueryException

    spark, databricks = ctx.spark, ctx.lakehouse.databricks
    checkpoint = validate_checkpoint(
        checkpoint_location
        or default_checkpoint(spark, databricks, ref.catalog, ref.schema, ref.table),
        source, databricks)
    # Locally a file lock keeps a second run out; on Databricks, Delta's transaction ids
    # and the job's max_concurrent_runs (a FUSE volume gives no reliable flock).
    with nullcontext() if databricks else checkpoint_lock(checkpoint):
        schema = source_schema_checked(ctx, source, source_format, checkpoint, source_schema,
                                       line_separator)
        stream = open_stream(spark, source, source_format, schema, checkpoint, databricks,
                             line_separator)
        domains = equality.prepare(ctx, schema)
        setup_keyring = SnapshotKeyring(ctx.keyring)
        version, _ = setup_keyring.active_dek(ref.scope)
        empty = encrypt_rows(ctx, ref, spark.createDataFrame([], stream.schema), columns,
                             equality, domains, row_key=row_key, keyring=setup_keyring)
        target = prepare_target(ctx, ref, empty, columns, row_key, stream.schema,
                                equality.notes())
        subjects = subject_encryption(ctx, ref, spark.createDataFrame([], stream.schema),
                                      columns, subject_column)
        if id_column and id_column not in target.columns:
            raise ConfigError(f"target {target.name} has no column {id_column}")
        ingested = None
        if target.existed and not checkpoint_has_commits(checkpoint):
            ingested = files_in_target(ctx, target)
        full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
        writer = batch_writer(spark, databricks, target.storage, checkpoint,
                              transaction_app_id(full_name, checkpoint))
        tally = _Tally()
        usage = usage_guard(ctx)
        batch_equality = _BatchEquality(equality, domains,
                                        domain_usage_guard(ctx) if equality.deterministic
                                        else None)

        def process(batch: DataFrame, batch_id: int) -> None:
            try:
                _process_batch(ctx, ref, target, columns, writer, tally, batch, batch_id,
                               ingested=ingested, id_column=id_column, row_key=row_key,
                               usage=usage, equality=batch_equality, subjects=subjects)
            except EnvelopeError as error:
                tally.error = error
                raise

        query = (stream.writeStream.foreachBatch(process)
                 .option("checkpointLocation", checkpoint)
                 .trigger(availableNow=True).start())
        try:
            query.awaitTermination()
        except StreamingQueryException as error:
            if subjects is not None:
                subjects.refresh()
            if tally.error is not None:
                raise tally.error from None
            # Spark's message may quote a malformed row: only its error condition is kept.
            first = str(error.getCondition() or "") or "streaming query failed"
            raise IngestFailed(
                f"reading {source} into {full_name} failed ({first}): a file that does not "
                "fit the schema, or an unreadable file. Nothing of the failed batch was "
                "written. Fix the file in place (the failed batch reads the same files "
                "again) and run again") from None
    if subjects is not None:
        subjects.refresh()
    log.info("wrote %d row(s) from %d file(s) into %s", tally.rows_written, len(tally.files),
             target.name)
    return EncryptReport(full_name, list(columns), tally.dek_version or version,
                         tally.rows_written,
                         tally.rows_read - tally.rows_written, len(tally.files),
                         tally.replayed, equality.describe())


@dataclass(frozen=True)
class SubjectEncryption:
    """Encrypts batches under per-subject keys (``--subject-column``). The salts of a
    batch's new subjects are created by a guarded INSERT (at most one salt per subject), so
    a replayed micro-batch reads back the salts its first attempt created and encrypts
    under them; see docs/erasure-scopes.md."""

    ctx: JobContext
    ref: TableRef
    columns: tuple[str, ...]
    subject_column: str

    def store(self, spark: SparkSession) -> SubjectStore:
        from ..keyring.subjects import SubjectStore

        settings = self.ctx.settings
        return SubjectStore(spark, self.ctx.lakehouse, settings.catalog, settings.crypto_schema)

    def encrypt(self, rows: DataFrame, version: int) -> DataFrame:
        from ..spark.subject_columns import encrypt_subject_columns

        # The rows' own session: foreachBatch hands over batches of a cloned session, and
        # the salts' INSERT reads a temporary view of them.
        return encrypt_subject_columns(
            rows, list(self.columns), keyring=self.ctx.keyring, table=self.ref,
            subject_column=self.subject_column, dek_version=version,
            subjects=self.store(rows.sparkSession))

    def refresh(self) -> None:
        """After a streaming run: the job's own session forgets its listing of the subject
        table, which the query's cloned session may have added salts to."""
        store = self.store(self.ctx.spark)
        if store.exists():
            self.ctx.spark.catalog.refreshTable(store.table.replace("`", ""))


def subject_encryption(ctx: JobContext, ref: TableRef, plain: DataFrame,
                       columns: Sequence[str], subject_column: str) -> SubjectEncryption | None:
    """The subject encryption of a run (None without a subject column), its column checked
    against the input's schema (``plain``) before anything is read."""
    if not subject_column:
        return None
    key_column_text(plain, subject_column, columns, "subject column")
    return SubjectEncryption(ctx, ref, tuple(columns), subject_column)


def source_schema_checked(ctx: JobContext, source: str, source_format: str, checkpoint: str,
                          given: str, line_separator: str) -> StructType:
    schema = source_schema(ctx.spark, source, source_format, checkpoint, given, line_separator)
    validate_source_fields(schema)  # nested names too, before any DDL
    if SOURCE_FILE_COLUMN in schema.names:
        raise ConfigError(f"the input has a column {SOURCE_FILE_COLUMN}, which the job "
                           "adds itself (the file each row came from)")
    return schema


@dataclass(frozen=True)
class _BatchEquality:
    """What each micro-batch needs for its deterministic and blind-index columns."""

    columns: EqualityColumns
    domains: EqualityDomains
    usage: UsageGuard | None  # counts deterministic encryptions (None: no such column)


def _process_batch(ctx: JobContext, ref: TableRef, target: Target, columns: Sequence[str],
                   writer, tally: _Tally, batch: DataFrame, batch_id: int, *,
                   ingested: DataFrame | None, id_column: str, row_key: str,
                   usage: UsageGuard, equality: _BatchEquality,
                   subjects: SubjectEncryption | None = None) -> None:
    from pyspark.sql import functions as F

    if writer.committed(batch_id):
        # Written before a crash cut the run short of the checkpoint's commit.
        log.info("batch %d already written to %s: skipped", batch_id, target.name)
        tally.replayed += 1
        return
    eq = equality.columns
    read = batch.agg(F.count(F.lit(1)).alias("rows"),
                     F.collect_set(SOURCE_FILE_COLUMN).alias("files"),
                     *non_null_counts(columns), *eq.aggregates(equality.domains)).first()
    eq.refuse_cells(read)
    tally.rows_read += read["rows"]
    tally.files.update(read["files"])
    rows, filtered = batch, False
    if ingested is not None:
        rows = rows.join(F.broadcast(ingested),
                         normalized_path(F.col(SOURCE_FILE_COLUMN)) == F.col("_ingested_file"),
                         "left_anti")
        filtered = True
    if id_column:
        done = ctx.spark.table(target.storage).select(id_column).distinct()
        rows, filtered = rows.join(done, on=id_column, how="left_anti"), True
    # Counted (and checked against the limits) before anything is encrypted or written.
    full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    values = values_to_encrypt(rows, columns) if filtered else values_in(read, columns)
    keyring = SnapshotKeyring(ctx.keyring)  # read once for this batch
    version = UsageGuard(keyring, usage.ledger, usage.limits).reserve(
        ref.scope, full_name, values, batch_id=batch_id)
    if equality.usage is not None:
        # The whole batch's deterministic values: an upper bound, as the usage rules want.
        reserve_domains(equality.usage, equality.domains, full_name, eq.values(read),
                        batch_id)
    if subjects is not None:  # salts of new subjects first: one guarded INSERT per batch
        encrypted = subjects.encrypt(rows, version)
    else:
        encrypted = encrypt_rows(ctx, ref, rows, columns, eq, equality.domains,
                                 row_key=row_key, dek_version=version, keyring=keyring)
    tally.dek_version = version
    # Unfiltered, the batch writes every row it read: the local writer need not count them.
    written = writer.write(encrypted.select(*[quote(c, "column") for c in target.columns]),
                           batch_id, rows_known=None if filtered else read["rows"])
    if written is None:
        written = rows.count() if filtered else read["rows"]
    tally.rows_written += written
