"""Job ``encrypt_columns``: encrypt new input into a target table.

Input is files (CSV, JSON or parquet under a path such as a Unity Catalog volume) or a table.
The configured columns are encrypted with the active DEK of the target's schema, Arrow-
batched on the executors, and appended to the target table.

Files are read incrementally (:mod:`.ingest_stream`): a Structured Streaming run with
``trigger(availableNow=True)`` and a checkpoint reads only the files it has not read before,
with an exact CSV reader and a schema given or recorded at the first run, and writes each
micro-batch exactly once. A table source is read whole, and rows whose ``--id-column``
value is already in the target are skipped, in one INSERT (a failed run leaves the table as
it was). Cells that already are cells of this place are never encrypted twice.
Deterministic cells and blind indexes (``--equality-domains``, ``--deterministic-columns``,
``--blind-index-columns``; :mod:`.ingest_equality`, docs/equality.md) are written in the
same batches. After a run the target's encrypted columns are registered
(``table_registry``), so the jobs that look for a scope's cells find them. See docs/pipeline.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError
from ..identifiers import parse_table_name, quote, validate_identifier
from ..spark.columns import TableRef
from ..spark.usage_count import non_null_counts, values_in
from .common import JobContext, build_context, job_parser, log, run_main
from .ingest_equality import EqualityColumns, domain_usage_guard, encrypt_rows, reserve_domains
from .ingest_source import FILE_FORMATS, SOURCE_FILE_COLUMN, reader_options
from .ingest_stream import ingest_files, subject_encryption
from .ingest_target import EncryptReport, prepare_target, sql_type, validate_source_fields
from .table_registry import table_registry
from .usage_limits import usage_guard

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["FILE_FORMATS", "SOURCE_FILE_COLUMN", "EncryptReport", "main", "run", "sql_type"]


def read_table_source(ctx: JobContext, source: str) -> DataFrame:
    catalog, schema, table = parse_table_name(source, ctx.settings.catalog)
    return ctx.spark.table(ctx.lakehouse.table(catalog, schema, table))


def run(
    settings: Settings,
    spark=None,
    *,
    source: str,
    source_format: str,
    target_table: str,
    columns: Sequence[str],
    id_column: str = "",
    mask: bool = False,
    row_key_column: str = "",
    sql_crypto_catalog: str = "",
    checkpoint_location: str = "",
    source_schema: str = "",
    csv_line_separator: str = "auto",
    subject_column: str = "",
    equality_domains: str = "",
    deterministic_columns: str = "",
    blind_index_columns: str = "",
) -> EncryptReport:
    """Encrypt ``columns`` of the new input into ``target_table`` (see the module's doc).

    ``checkpoint_location``, ``source_schema`` (a DDL column list) and
    ``csv_line_separator`` (auto, crlf, lf) apply to file sources; empty: the default
    checkpoint, and the schema recorded at the first run. ``subject_column`` encrypts each
    row under its subject's key (docs/erasure-scopes.md).
    ``equality_domains`` (``name[:normal_form[:bits]]``, comma-separated),
    ``deterministic_columns`` and ``blind_index_columns`` (``column=domain``,
    comma-separated) add deterministic cells and blind indexes (docs/equality.md, "Jobs").
    """
    catalog, schema, table = parse_table_name(target_table, settings.catalog)
    ref = TableRef(catalog, schema, table)
    columns = [validate_identifier(c, "column") for c in columns]
    if id_column:
        validate_identifier(id_column, "id column")
    # Refused before anything is read, created or written.
    equality = EqualityColumns.parse(equality_domains, deterministic_columns,
                                     blind_index_columns)
    equality.check(columns, id_column=id_column, row_key=row_key_column,
                   subject_column=subject_column)
    with build_context(settings, spark) as ctx:
        if subject_column and row_key_column:
            raise ConfigError("--subject-column cannot be combined with --row-key-column: a "
                              "subject-keyed cell is bound to its subject and column, its "
                              "format has no row binding (docs/erasure-scopes.md, 'Limits')")
        if source_format == "table":
            if not id_column:
                raise ConfigError(
                    "a table source needs --id-column, so re-runs skip rows already done")
            if checkpoint_location or source_schema:
                raise ConfigError("--checkpoint-location and --source-schema are for file "
                                  "sources; a table source is read whole, by --id-column")
            report = _run_table(ctx, ref, source, columns, id_column, row_key_column,
                                subject_column, equality)
        else:
            # An unknown format or separator fails before anything starts.
            reader_options(source_format, csv_line_separator)
            report = ingest_files(ctx, ref, source, source_format, columns,
                                  id_column=id_column, row_key=row_key_column,
                                  checkpoint_location=checkpoint_location,
                                  source_schema=source_schema,
                                  line_separator=csv_line_separator, equality=equality,
                                  subject_column=subject_column)
        if ctx.lakehouse.table_exists(ctx.spark, catalog, schema, table):
            # Idempotent: a re-run with the same columns writes nothing to the registry.
            if columns:
                table_registry(ctx).register(catalog, schema, table, columns, row_key_column)
            if equality:
                equality.register(ctx, catalog, schema, table)
        if mask:
            from ..spark.sql.deploy import apply_column_masks
            from ..spark.sql.target import SqlOptions

            # Deterministic cells get the same mask; blind indexes none (not secret to the
            # table's readers, and what their lookups compare).
            apply_column_masks(ctx.spark, ctx.settings, ref,
                               [*columns, *equality.deterministic],
                               databricks=ctx.lakehouse.databricks,
                               options=SqlOptions(crypto_catalog=sql_crypto_catalog),
                               subject_column=subject_column)
        return report


def _run_table(ctx: JobContext, ref: TableRef, source: str, columns: list[str],
               id_column: str, row_key: str, subject_column: str,
               equality: EqualityColumns) -> EncryptReport:
    """A table source: rows whose id is not in the target yet, in one INSERT."""
    from pyspark.sql import functions as F

    source_rows = read_table_source(ctx, source)
    validate_source_fields(source_rows.schema)
    domains = equality.prepare(ctx, source_rows.schema)
    incoming = source_rows
    if ctx.lakehouse.table_exists(ctx.spark, ref.catalog, ref.schema, ref.table):
        done = ctx.spark.table(ctx.lakehouse.table(ref.catalog, ref.schema, ref.table))
        if id_column not in done.columns:
            raise ConfigError(f"target {ref.catalog}.{ref.schema}.{ref.table} has no column "
                              f"{id_column}")
        incoming = incoming.join(done.select(id_column).distinct(), on=id_column,
                                 how="left_anti")
    read = incoming.agg(F.count(F.lit(1)).alias("rows"), *non_null_counts(columns),
                        *equality.aggregates(domains)).first()
    equality.refuse_cells(read)
    total = read["rows"]
    # Counted (and checked against the usage limits) before anything is encrypted; the
    # version returned is the active one (a new one after an automatic rotation).
    full_name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    version = usage_guard(ctx).reserve(ref.scope, full_name, values_in(read, columns))
    if equality.deterministic:
        reserve_domains(domain_usage_guard(ctx), domains, full_name, equality.values(read))
    subjects = subject_encryption(ctx, ref, incoming, columns, subject_column)
    if subjects is not None:
        encrypted = subjects.encrypt(incoming, version)
    else:
        encrypted = encrypt_rows(ctx, ref, incoming, columns, equality, domains,
                                 row_key=row_key, dek_version=version)
    target = prepare_target(ctx, ref, encrypted, columns, row_key, incoming.schema,
                            equality.notes())
    view = f"_encrypt_columns_{ref.table}"
    encrypted.select(*[quote(c, "column") for c in target.columns]).createOrReplaceTempView(view)
    try:
        # One INSERT: on Delta one commit; a failure leaves the table as it was. Rows go
        # where the table stores them (masks apply to reads only).
        ctx.spark.sql(f"INSERT INTO {target.storage} SELECT * FROM {quote(view)}")
    finally:
        ctx.spark.catalog.dropTempView(view)
    log.info("wrote %d row(s) into %s", total, target.name)
    skipped = source_rows.count() - total if target.existed else 0
    return EncryptReport(full_name, list(columns), version, total, skipped,
                         equality=equality.describe())


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("encrypt_columns", "Encrypt columns of new input into a target table.")
    parser.add_argument("--source", required=True,
                        help="Input path (files, e.g. /Volumes/c/s/v/landing) or table name.")
    parser.add_argument("--source-format", default="csv",
                        help="csv, json, parquet, or table.")
    parser.add_argument("--checkpoint-location", default="",
                        help="File sources: folder of this target's checkpoint (which files "
                             "were read, the recorded schema). Empty: /Volumes/<catalog>/"
                             "<schema>/envelope_checkpoints/encrypt_columns/<table> on "
                             "Databricks, <local state>/checkpoints/<catalog>/<schema>/<table> "
                             "locally. Never inside the source folder.")
    parser.add_argument("--source-schema", default="",
                        help="File sources: the input's columns as DDL, e.g. 'id BIGINT, "
                             "name STRING'. Empty: inferred once at the first run and "
                             "recorded in the checkpoint (_schema.json), never re-inferred.")
    parser.add_argument("--csv-line-separator", default="auto", choices=("auto", "crlf", "lf"),
                        help="CSV record separator. crlf (RFC 4180) or lf: every value read "
                             "exactly, a file with the other separator fails the run; auto: "
                             "detected per file, but a CRLF inside a quoted value of a CRLF "
                             "file is read as LF.")
    parser.add_argument("--target-table", required=True, help="[catalog.]schema.table to append.")
    parser.add_argument("--columns", required=True,
                        help="Comma-separated columns to encrypt (randomized ee1 cells); may "
                             "be empty when --deterministic-columns are given.")
    parser.add_argument("--equality-domains", default="",
                        help="Equality domains the two options below may name: "
                             "name[:normal_form[:bits]], comma-separated, e.g. "
                             "'ssn:digits:64,email:casefold' (normal forms exact, trim, "
                             "casefold, digits; default exact, 32 bits). Give every job the "
                             "same value (docs/equality.md).")
    parser.add_argument("--deterministic-columns", default="",
                        help="column=domain, comma-separated: deterministic cells (ed1), equal "
                             "for equal values across the domain, so joins and GROUP BY work "
                             "on them. Not also in --columns. Leaks equality and frequencies.")
    parser.add_argument("--blind-index-columns", default="",
                        help="column=domain, comma-separated: a blind index (bi1) of the "
                             "column's plaintext in <column>_bidx, for lookups and joins; "
                             "the column itself is encrypted if it is in --columns.")
    parser.add_argument("--id-column", default="",
                        help="Unique key; rows whose key is already in the target are skipped "
                             "(needed for a table source; optional for files, which the "
                             "checkpoint already reads once).")
    parser.add_argument("--mask", type=parse_bool, default=False,
                        help="Put the decrypt column mask on every encrypted column "
                             "(--columns and --deterministic-columns; blind indexes get none).")
    parser.add_argument("--row-key-column", default="",
                        help="Bind every cell to its row's value of this column (not "
                             "encrypted, never NULL); empty: cells are bound to their column "
                             "only. Readers must then give the same column.")
    parser.add_argument("--subject-column", default="",
                        help="Encrypt each row under the key of its subject "
                             "(e.g. customer_id; not encrypted, never NULL), so erase_subject "
                             "can crypto-shred one subject; empty: the scope's DEK.")
    parser.add_argument("--sql-crypto-catalog", default="",
                        help="kek_setup's --sql-crypto-catalog (empty: the data catalog).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> EncryptReport:
        return run(
            settings, source=args.source, source_format=args.source_format,
            target_table=args.target_table, columns=split_list(args.columns),
            id_column=args.id_column, mask=args.mask, row_key_column=args.row_key_column,
            sql_crypto_catalog=args.sql_crypto_catalog,
            checkpoint_location=args.checkpoint_location, source_schema=args.source_schema,
            csv_line_separator=args.csv_line_separator, subject_column=args.subject_column,
            equality_domains=args.equality_domains,
            deterministic_columns=args.deterministic_columns,
            blind_index_columns=args.blind_index_columns,
        )

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
