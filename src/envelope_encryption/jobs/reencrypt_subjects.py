"""``reencrypt_columns`` on subject-keyed columns (``--subject-column``, erasure scopes).

After a DEK rotation, cells ``ee1:<old>:<type>+subj:...`` move to the active version under
their subject's same salt (:mod:`..spark.subject_reencrypt`), in both modes of
``reencrypt_columns``:

- ``batched``: the same resumable batches (:mod:`.reencrypt_batches`,
  :mod:`.reencrypt_files`), selected by the cells' version prefix **and** a subject that is
  not erased. An erased subject's cells keep their old version for ever (no one can open
  them), so without that second condition every re-run would select their rows again.
- ``whole``: the table replaced in one step, every cell authenticated.

Erased subjects' cells are left exactly as they are and reported per version
(``erased_left``), never an error. They still name the old version, so ``dek_state
--to retired/destroyed`` of that version counts them as in use: pass ``--force`` once the
report shows that only erased subjects' cells are left (they were unreadable already).

Subject cells cannot be bound to rows (their format has no row binding), and are never
legacy cells: ``--row-key-column`` and ``--bind-rows`` are refused with a subject column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..identifiers import validate_identifier
from ..keyring.audit import AuditEvent
from ..keyring.subjects import SubjectStore
from ..spark.cells_guard import checked_rewrite
from ..spark.columns import TableRef, cells_per_version
from ..spark.sql.target import SqlOptions
from ..spark.subject_reencrypt import (
    drop_live_subject_function,
    erased_cells_per_version,
    live_condition,
    live_subject_function,
    reencrypt_subject_columns,
    require_subject_cells,
)
from .common import JobContext, log
from .reencrypt_batches import BatchProgress, Pending, delta_batches, pending_cells
from .reencrypt_files import local_file_batches
from .usage_limits import usage_guard

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class SubjectPending(Pending):
    """Pending cells of a subject-keyed table: old versions, in rows whose subject is not
    erased (``live``: the SQL function of :func:`live_subject_function`; empty: none is)."""

    subject_column: str = ""
    live: str = ""

    def predicate(self, alias: str = "") -> str:
        """The rows to rewrite. With an ``alias`` (the target side of a Delta ``MERGE``)
        the subject condition is left out, so no Python function runs inside the MERGE's
        condition: its source (read without alias) holds only live subjects' rows, and a
        target row is updated only when it matches a source row."""
        cells = super().predicate(alias)
        if not self.live or cells == "FALSE" or alias:
            return cells
        return f"({cells}) AND {live_condition(self.live, self.subject_column)}"


@dataclass
class SubjectRewrite:
    """What ``reencrypt_columns`` was asked, for a subject-keyed table."""

    columns: list[str]
    subject_column: str
    job_group: str
    allow_null_columns: bool
    mode: str
    batch_rows: int
    retire_legacy: bool = False
    tables: list[str] = field(default_factory=list)  # other tables, for retire_legacy


@dataclass(frozen=True)
class ReencryptJob:
    """What ``reencrypt_columns`` lends this module (which cannot import it: it imports
    this one): its report type, its whole-table swap and its legacy retirement."""

    report: type
    rewrite_whole: Callable
    retire_legacy: Callable


@cache
def subject_report(base: type) -> type:
    """``reencrypt_columns``' report with what a subject-keyed run adds: the subject column
    and the cells of erased subjects per version (``erased_left``), left as they are."""

    @dataclass
    class SubjectReencryptReport(base):
        subject_column: str = ""
        erased_left: dict[int, int] = field(default_factory=dict)

        @property
        def erased_skipped(self) -> int:
            """Cells of erased subjects left under older versions (no one can open them)."""
            return sum(n for v, n in self.erased_left.items() if v != self.active_version)

        def __str__(self) -> str:
            return (f"{super().__str__()}; subject-keyed by {self.subject_column}: "
                    f"{self.erased_skipped} cell(s) of erased subjects skipped (left as "
                    f"they are: no one can open them), per version {self.erased_left}")

    return SubjectReencryptReport


def refuse_unsupported(subject_column: str, subject_keyed: Sequence[str], *,
                       row_key_column: str, bind_rows: bool) -> None:
    """The options a subject-keyed re-encryption cannot honour, refused before any read."""
    if not subject_column:
        raise ConfigError(
            f"column(s) {', '.join(subject_keyed)} hold subject-keyed cells (+subj): give "
            "--subject-column (the column naming each row's subject, e.g. customer_id) so "
            "that each cell is re-encrypted under its subject's salt")
    validate_identifier(subject_column, "subject column")
    if row_key_column or bind_rows:
        raise ConfigError("--row-key-column and --bind-rows do not apply to subject-keyed "
                          "cells: a subject cell is bound to its subject and column, its "
                          "format has no row binding (docs/erasure-scopes.md)")


def reencrypt_subject_table(ctx: JobContext, ref: TableRef, current: DataFrame,
                            asked: SubjectRewrite, job: ReencryptJob):
    """Re-encrypt the subject cells of one table (``current``, read through its name);
    returns ``subject_report(job.report)``."""
    spark, columns = ctx.spark, asked.columns
    full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    subjects = SubjectStore(spark, ctx.lakehouse, ctx.settings.catalog,
                            ctx.settings.crypto_schema)
    group = SqlOptions(job_group=asked.job_group).job_group_name(ref.catalog, ref.schema)
    seen = require_subject_cells(spark, current, ref, columns, lakehouse=ctx.lakehouse,
                                 job_group=group, allow_null_columns=asked.allow_null_columns)
    before = cells_per_version(current, columns)
    version = usage_guard(ctx).reserve(
        ref.scope, full_name, sum(c.non_null for c in seen.columns.values()), before)
    ctx.keyring.deks(ref.scope)  # every key unwrapped before the first batch commits
    live = live_subject_function(spark, ctx.keyring, subjects, ref.scope)
    try:
        progress = _rewrite(ctx, ref, current, asked, subjects, version, live, seen, before,
                            job.rewrite_whole)
        target = ctx.lakehouse.table(ref.catalog, ref.schema, ref.table)
        spark.catalog.refreshTable(target.replace("`", ""))
        stored = spark.table(target)
        after = cells_per_version(stored, columns)
        erased = erased_cells_per_version(stored, columns, asked.subject_column, live)
    finally:
        drop_live_subject_function(spark, live)
    report = subject_report(job.report)(
        full_name, version, before, after, mode=asked.mode, rows_to_do=progress.to_do,
        rows_done=progress.done, batches=progress.committed,
        subject_column=asked.subject_column, erased_left=erased)
    log.info("re-encrypted the subject cells of %s under DEK v%d; %d cell(s) of erased "
             "subjects skipped", full_name, version, report.erased_skipped)
    ctx.keyring.audit.record(AuditEvent(
        "cells_reencrypted", scope=ref.scope, key_version=version, table_name=full_name,
        detail=f"subject-keyed by {asked.subject_column}: cells per DEK version before "
               f"{before}, after {after}; cells of erased subjects left as they are "
               f"{erased}; {report.progress}"))
    if asked.retire_legacy:
        report.retired_legacy = job.retire_legacy(
            ctx, ref.scope, list(dict.fromkeys([full_name, *asked.tables])),
            job_group=asked.job_group, allow_null_columns=asked.allow_null_columns)
    return report


def _rewrite(ctx: JobContext, ref: TableRef, current: DataFrame, asked: SubjectRewrite,
             subjects: SubjectStore, version: int, live: str | None, seen,
             before: dict[int, int], rewrite_whole: Callable) -> BatchProgress:
    full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    databricks = ctx.lakehouse.databricks

    def rewrite(rows: DataFrame) -> DataFrame:
        # Locally each source file's rows must stay in one task: broadcast the salts.
        return reencrypt_subject_columns(
            rows, asked.columns, keyring=ctx.keyring, table=ref,
            subject_column=asked.subject_column, subjects=subjects, dek_version=version,
            broadcast=None if databricks else True)

    if asked.mode == "whole":
        rewrite_whole(ctx, ref, checked_rewrite(ctx.spark, rewrite(current), seen,
                                               f"_reencrypt_{ref.table}"), ref.table)
        return BatchProgress(full_name, seen.rows, 1, seen.rows, 1)
    found = pending_cells(asked.columns, version, list(before), legacy=False,
                          bind_rows=False)
    pending = SubjectPending(found.columns, found.active_version, found.old_versions,
                             subject_column=asked.subject_column, live=live or "")
    storage = ctx.lakehouse.storage_table(ctx.spark, ref.catalog, ref.schema, ref.table)
    if databricks:
        return delta_batches(ctx.spark, storage, full_name, pending, None, asked.batch_rows,
                             rewrite)
    return local_file_batches(ctx.spark, storage, full_name, pending, asked.batch_rows,
                              rewrite)
