"""Job ``reencrypt_columns``: move a table's cells to the active DEK version.

Cells of older versions (and, for scopes with an imported legacy DEK, the original
notebooks' header-less cells) are decrypted and encrypted again under the active version;
cells already under it are kept. Two modes (``--mode``):

- ``batched`` (default): only the rows holding cells of older versions (or legacy cells, or
  with ``--bind-rows`` unbound ones) are rewritten, selected by a predicate on the cells'
  version prefix, in batches of about ``--batch-rows`` rows, each batch one atomic commit
  (Delta: one ``MERGE``; local parquet: files swapped by rename through a redo journal). The
  predicate is the checkpoint: a killed run is completed by running the job again, and
  every cell is rewritten exactly once (:mod:`.reencrypt_batches`, :mod:`.reencrypt_files`).
  Progress (rows done of rows to do) is logged after every batch.
- ``whole``: the table is replaced in one step: on Databricks an ``INSERT OVERWRITE`` (one
  Delta commit); locally a staging table swapped in by rename, the old table dropped only
  after the swap. It reads and authenticates every cell, the ones already under the active
  version too, and writes the table anew (compacted): use it as a full integrity pass, or for
  a locally partitioned table. A cell that does not decrypt fails the job before anything is
  replaced.

Run it as a member of the job group (``--sql-job-group``, default
``<catalog>.crypto.jobs``): the column masks give that group the cells unchanged. Anyone else
reads the masks' output (NULL, ``[REDACTED]`` or plaintext), so the job first checks what it
reads (:func:`envelope_encryption.spark.cells_guard.require_cells`) and refuses unless it is
cells, and the rewrite itself fails before it commits if a column's number of non-NULL
values changed.

Every cell the job reads is authenticated, including those already under the active version
(in ``batched`` mode: those in the rows it rewrites), which are kept unchanged only if they
open. ``--row-key-column`` names the column the table binds its
cells to (``--bind-rows=true`` binds a table's unbound and legacy cells to their rows, once).

Legacy cells carry no associated data, so once a scope is off them its imported legacy DEK
should decrypt nothing: with ``--retire-legacy=true`` the job, after the rewrite, counts
legacy values (and cells of the legacy version) in this table and in ``--tables`` (every
other table of the scope; empty: the tables registered for the scope), and retires the
legacy DEK version(s) through the keyring if none is left. Retired versions are read by no
path: not the Python or DataFrame functions (they unwrap enabled versions only), not the SQL
masks (they read enabled versions only).
If some are left, the rewrite stands and the job fails, naming the count.

With ``--equality-domains`` and ``--deterministic-columns`` / ``--blind-index-columns`` the job
also (or, without ``--columns``, only) moves the table's deterministic cells and blind
indexes to the active version of their equality domain (:mod:`.reencrypt_equality`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError, KeyringError
from ..identifiers import parse_table_name, validate_identifier
from ..keyring.audit import AuditEvent
from ..keyring.base import LEGACY_KEY_TYPE
from ..spark.cells_guard import (
    checked_rewrite,
    has_legacy_key,
    require_cells,
    require_job_group,
)
from ..spark.columns import TableRef, cells_per_version, reencrypt_columns
from ..spark.legacy_cells import legacy_cells_per_version
from ..spark.sql.target import SqlOptions
from ..spark.subject_reencrypt import subject_keyed_columns
from .common import JobContext, build_context, job_parser, log, run_main
from .guarded_reads import add_cells_guard_arguments, cells_in_use
from .reencrypt_batches import (
    DEFAULT_BATCH_ROWS,
    BatchProgress,
    check_batch_rows,
    delta_batches,
    pending_cells,
)
from .reencrypt_equality import add_equality_arguments, equality_requested
from .reencrypt_equality import run_from_args as run_equality_from_args
from .reencrypt_files import local_file_batches, rewrite_whole
from .table_registry import tables_to_check
from .usage_limits import usage_guard

BATCHED, WHOLE = "batched", "whole"
MODES = (BATCHED, WHOLE)


@dataclass
class ReencryptReport:
    table: str
    active_version: int
    before: dict[int, int]
    after: dict[int, int]
    retired_legacy: list[int] = field(default_factory=list)
    # Legacy (header-less) cells per legacy DEK version that opens them.
    legacy_before: dict[int, int] = field(default_factory=dict)
    legacy_after: dict[int, int] = field(default_factory=dict)
    mode: str = BATCHED
    rows_to_do: int = 0  # rows holding a pending cell when the rewrite began
    rows_done: int = 0  # rows rewritten by this run
    batches: int = 0  # commits made by this run

    @property
    def progress(self) -> str:
        return (f"{self.rows_done} of {self.rows_to_do} rows rewritten in {self.batches} "
                f"batch(es), mode {self.mode}")

    def __str__(self) -> str:
        retired = (f"; legacy DEK version(s) {self.retired_legacy} retired"
                   if self.retired_legacy else "")
        legacy = (f"; legacy cells per legacy DEK version before {self.legacy_before}, after "
                  f"{self.legacy_after}" if self.legacy_before or self.legacy_after else "")
        return (f"{self.table}: cells per DEK version before {self.before}, after {self.after} "
                f"(active v{self.active_version}); {self.progress}{legacy}{retired}")


def retire_legacy_deks(ctx: JobContext, scope: str, tables: Sequence[str], *, job_group: str,
                       allow_null_columns: bool) -> list[int]:
    """Retire the scope's enabled legacy DEK version(s) if ``tables`` hold none of their
    values any more; refuse (KeyringError) otherwise. Returns the versions retired."""
    legacy = [r.version for r in ctx.keyring.versions(scope)
              if r.key_type == LEGACY_KEY_TYPE and r.decrypts]
    counts = {v: cells_in_use(ctx, scope, v, tables, job_group=job_group,
                              allow_null_columns=allow_null_columns) for v in legacy}
    left = {v: n for v, n in counts.items() if n}
    if left:
        raise KeyringError(
            f"re-encryption done, but the legacy DEK of {scope} was not retired: "
            + ", ".join(f"{n} value(s) still need v{v}" for v, n in left.items())
            + f" in {', '.join(tables)} (a cell under a legacy version needs a new DEK "
            "version first: run dek_generation, then reencrypt_columns again)")
    for version in legacy:
        ctx.keyring.retire(scope, version, in_use=False)
        log.info("retired the legacy DEK %s v%d: no legacy value is left", scope, version)
    return legacy


def run(settings: Settings, spark=None, *, table: str, columns: Sequence[str],
        job_group: str = SqlOptions.job_group,
        allow_null_columns: bool = False, row_key_column: str = "", bind_rows: bool = False,
        retire_legacy: bool = False, tables: Sequence[str] = (), mode: str = BATCHED,
        batch_rows: int = DEFAULT_BATCH_ROWS, subject_column: str = "") -> ReencryptReport:
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    check_batch_rows(batch_rows)
    with build_context(settings, spark) as ctx:
        catalog, schema, name = parse_table_name(table, settings.catalog)
        ref = TableRef(catalog, schema, name)
        full_name = f"{catalog}.{schema}.{name}"
        columns = [validate_identifier(c, "column") for c in columns]
        if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
            raise ConfigError(f"table {full_name} does not exist")
        # Before the rewrite, so that a registered table that was dropped stops the job first.
        others = (tables_to_check(ctx, ref.scope, tables, "reencrypt_columns")
                  if retire_legacy else [])
        # Read through the table's name, masks and all, exactly as every other reader does.
        target = ctx.lakehouse.table(catalog, schema, name)
        current = ctx.spark.table(target)
        # The principal first: no value is looked at (which form the cells have) before it
        # is known that the job reads cells, not what a mask gives other readers.
        require_job_group(ctx.spark, ctx.lakehouse, ref,
                          SqlOptions(job_group=job_group).job_group_name(catalog, schema))
        subject_keyed = subject_keyed_columns(current, columns)
        if subject_column or subject_keyed:  # cells under per-subject keys
            from . import reencrypt_subjects as subj

            subj.refuse_unsupported(subject_column, subject_keyed,
                                    row_key_column=row_key_column, bind_rows=bind_rows)
            return subj.reencrypt_subject_table(ctx, ref, current, subj.SubjectRewrite(
                columns, subject_column, job_group, allow_null_columns, mode, batch_rows,
                retire_legacy, others), subj.ReencryptJob(ReencryptReport, rewrite_whole,
                                                          retire_legacy_deks))
        legacy = has_legacy_key(ctx.keyring, ref.scope)
        seen = require_cells(
            ctx.spark, current, ref, columns, lakehouse=ctx.lakehouse,
            job_group=SqlOptions(job_group=job_group).job_group_name(catalog, schema),
            legacy=legacy, allow_null_columns=allow_null_columns,
        )
        before = cells_per_version(current, columns)
        legacy_before = legacy_cells_per_version(current, columns, ctx.keyring, ref.scope)
        # Counted (and checked against the usage limits) before anything is encrypted:
        # every non-NULL value but the cells kept under the version (all of them are
        # rewritten when binding rows).
        version = usage_guard(ctx).reserve(
            ref.scope, full_name,
            sum(seen.columns[c].non_null for c in columns), {} if bind_rows else before)
        # Every key the batches need is unwrapped before the first one commits.
        ctx.keyring.deks(ref.scope)

        def rewrite(rows):
            return reencrypt_columns(rows, columns, keyring=ctx.keyring, table=ref,
                                     row_key=row_key_column or None, bind_unbound=bind_rows,
                                     dek_version=version)

        if mode == WHOLE:
            rewrite_whole(ctx, ref,
                          checked_rewrite(ctx.spark, rewrite(current), seen,
                                          f"_reencrypt_{name}"), name)
            progress = BatchProgress(full_name, seen.rows, 1, seen.rows, 1)
        else:
            pending = pending_cells(columns, version, list(before), legacy=legacy,
                                    bind_rows=bind_rows)
            storage = ctx.lakehouse.storage_table(ctx.spark, catalog, schema, name)
            progress = (delta_batches(ctx.spark, storage, full_name, pending,
                                      row_key_column or None, batch_rows, rewrite)
                        if ctx.lakehouse.databricks else
                        local_file_batches(ctx.spark, storage, full_name, pending,
                                           batch_rows, rewrite))
        ctx.spark.catalog.refreshTable(target.replace("`", ""))
        after = cells_per_version(ctx.spark.table(target), columns)
        log.info("re-encrypted %s under DEK v%d", full_name, version)
        report = ReencryptReport(full_name, version, before, after,
                                 legacy_before=legacy_before, legacy_after=legacy_cells_per_version(
                                     ctx.spark.table(target), columns, ctx.keyring, ref.scope),
                                 mode=mode, rows_to_do=progress.to_do,
                                 rows_done=progress.done, batches=progress.committed)
        ctx.keyring.audit.record(AuditEvent(
            "cells_reencrypted", scope=ref.scope, key_version=version,
            table_name=report.table,
            detail=f"cells per DEK version before {before}, after {after}; legacy cells per "
                   f"legacy version before {report.legacy_before}, after "
                   f"{report.legacy_after}; {report.progress}"))
        if retire_legacy:
            report.retired_legacy = retire_legacy_deks(
                ctx, ref.scope, list(dict.fromkeys([report.table, *others])),
                job_group=job_group, allow_null_columns=allow_null_columns)
        return report


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "reencrypt_columns",
        "Re-encrypt a table's cells of older DEK versions (and legacy cells) under the "
        "active version: by default only the rows holding them, in bounded batches, each "
        "one atomic commit; a killed run is completed by running it again.",
    )
    parser.add_argument("--table", required=True, help="[catalog.]schema.table to re-encrypt.")
    parser.add_argument("--columns", default="",
                        help="Comma-separated encrypted columns (ee1 cells). Required unless "
                             "--deterministic-columns or --blind-index-columns is given.")
    parser.add_argument("--mode", choices=MODES, default=BATCHED,
                        help="batched (default): rewrite only rows holding older cells, in "
                             "resumable batches. whole: replace the table in one step, "
                             "authenticating every cell (a full integrity pass).")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS,
                        help="Batched mode: about how many rows each commit rewrites "
                             f"(default {DEFAULT_BATCH_ROWS}; locally whole files, so a "
                             "file with more such rows is a batch of its own).")
    parser.add_argument("--row-key-column", default="",
                        help="Column the table binds its cells to (empty: rows not bound).")
    parser.add_argument("--bind-rows", type=parse_bool, default=False,
                        help="With --row-key-column: bind the table's unbound and legacy "
                             "cells to their rows (once, when a table starts binding rows).")
    parser.add_argument("--retire-legacy", type=parse_bool, default=False,
                        help="Retire the scope's imported legacy DEK once no legacy value is "
                             "left in this table and in --tables.")
    parser.add_argument("--tables", default="",
                        help="With --retire-legacy: every other table of the scope that may "
                             "hold legacy cells (checked before the legacy DEK is retired). "
                             "Empty: the tables registered for the scope (table_registry).")
    parser.add_argument("--subject-column", default="",
                        help="Subject-keyed columns (encrypt_columns --subject-column): the "
                             "column naming each row's subject; its cells move to the active "
                             "version under the same subject salt, erased subjects' cells "
                             "are left as they are. Needed when the cells are subject-keyed.")
    add_cells_guard_arguments(parser)
    add_equality_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        if not args.columns and not equality_requested(args):
            raise ConfigError("give --columns, or --deterministic-columns or "
                              "--blind-index-columns (with --equality-domains)")
        reports = [] if not args.columns else [str(run(
            settings, table=args.table, columns=split_list(args.columns),
            job_group=args.sql_job_group, allow_null_columns=args.allow_null_columns,
            row_key_column=args.row_key_column, bind_rows=args.bind_rows,
            retire_legacy=args.retire_legacy, tables=split_list(args.tables),
            mode=args.mode, batch_rows=args.batch_rows,
            subject_column=args.subject_column))]
        if equality_requested(args):
            reports.append(str(run_equality_from_args(settings, args)))
        return "\n".join(reports)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
