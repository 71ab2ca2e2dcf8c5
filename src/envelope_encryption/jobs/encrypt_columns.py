"""Job ``encrypt_columns``: encrypt new input into a target table.

Input is files (CSV, JSON or parquet under a path such as a Unity Catalog volume) or a table.
The configured columns are encrypted with the active DEK of the target's schema, Arrow-
batched on the executors, and the rows are appended to the target table in one INSERT, so a
failed run leaves the table as it was.

Re-running on the same input adds nothing: files already ingested (the target keeps each
row's source file in ``_source_file``) or rows whose ``--id-column`` value is already in the
target are skipped, and cells that already are cells of this place are never encrypted
twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cell.format import CELL_PREFIX, ROW_BOUND_SUFFIX
from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError
from ..identifiers import parse_table_name, quote, validate_identifier
from ..spark.columns import TableRef, encrypt_columns
from .common import JobContext, build_context, job_parser, log, run_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType

SOURCE_FILE_COLUMN = "_source_file"
FILE_FORMATS = ("csv", "json", "parquet")


@dataclass
class EncryptReport:
    target: str
    columns: list[str]
    dek_version: int
    rows_written: int
    rows_skipped: int

    def __str__(self) -> str:
        return (
            f"{self.target}: {self.rows_written} row(s) written with {', '.join(self.columns)} "
            f"encrypted (DEK v{self.dek_version}); {self.rows_skipped} already present, skipped"
        )


def read_source(ctx: JobContext, source: str, source_format: str) -> DataFrame:
    from pyspark.sql import functions as F

    if source_format == "table":
        catalog, schema, table = parse_table_name(source, ctx.settings.catalog)
        return ctx.spark.table(ctx.lakehouse.table(catalog, schema, table))
    if source_format not in FILE_FORMATS:
        raise ConfigError(
            f"unknown --source-format {source_format!r}: use {', '.join(FILE_FORMATS)} or table"
        )
    reader = ctx.spark.read.format(source_format)
    if source_format == "csv":
        reader = reader.option("header", True).option("inferSchema", True)
    return reader.load(source).withColumn(SOURCE_FILE_COLUMN, F.col("_metadata.file_path"))


def sql_type(data_type: DataType, where: str) -> str:
    """A column type for DDL, every nested field name validated and quoted.

    ``simpleString()`` writes struct field names bare, so a source field named
    ``x` STRING) LOCATION '/tmp/evil' --`` would become part of the statement: every name,
    at any depth (structs in arrays and maps too), must be an identifier, or ConfigError.
    """
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(data_type, StructType):
        return "STRUCT<" + ", ".join(
            f"{quote(f.name, f'source field in {where}')}: "
            f"{sql_type(f.dataType, f'{where}.{f.name}')}"
            for f in data_type.fields
        ) + ">"
    if isinstance(data_type, ArrayType):
        return f"ARRAY<{sql_type(data_type.elementType, where + '[]')}>"
    if isinstance(data_type, MapType):
        return (f"MAP<{sql_type(data_type.keyType, where + '{key}')}, "
                f"{sql_type(data_type.valueType, where + '{value}')}>")
    return data_type.simpleString()


def _target_ddl(df: DataFrame, encrypted: dict[str, str], row_key: str = "") -> str:
    bound = f", bound to rows by {row_key}" if row_key else ""
    parts = []
    for field in df.schema.fields:
        if field.name in encrypted:
            parts.append(
                f"{quote(field.name, 'column')} STRING COMMENT "
                f"'envelope-encrypted cells (ee1) of {encrypted[field.name]}{bound}'"
            )
        else:
            parts.append(f"{quote(field.name, 'column')} {sql_type(field.dataType, field.name)}")
    return ", ".join(parts)


def _require_same_binding(done: DataFrame, columns: Sequence[str], row_key: str) -> None:
    """Refuse to add cells bound otherwise than those already in the target: readers give a
    row key or not, and refuse cells whose binding differs, so a mixed column reads badly."""
    from pyspark.sql import functions as F

    for column in columns:
        if column not in done.columns:
            continue
        col = F.col(quote(column, "column"))
        first = done.where(col.startswith(CELL_PREFIX)).select(
            F.substring_index(col, ":", 3).alias("header")).limit(1).collect()
        if not first:
            continue
        bound = first[0]["header"].endswith(ROW_BOUND_SUFFIX)
        if bound and not row_key:
            raise ConfigError(f"{column}: the target's cells are bound to their rows; give the "
                              "same --row-key-column as the runs that wrote them")
        if row_key and not bound:
            raise ConfigError(
                f"{column}: the target's cells are not bound to rows; bind them first "
                f"(reencrypt_columns --row-key-column {row_key} --bind-rows=true) or leave "
                "--row-key-column empty")


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
) -> EncryptReport:
    with build_context(settings, spark) as ctx:
        catalog, schema, table = parse_table_name(target_table, settings.catalog)
        ref = TableRef(catalog, schema, table)
        target = ctx.lakehouse.table(catalog, schema, table)
        columns = [validate_identifier(c, "column") for c in columns]
        if source_format == "table" and not id_column:
            raise ConfigError("a table source needs --id-column, so re-runs skip rows already done")

        incoming = read_source(ctx, source, source_format)
        for field in incoming.schema.fields:  # nested names too, before any DDL
            sql_type(field.dataType, validate_identifier(field.name, "source column"))
        exists = ctx.lakehouse.table_exists(ctx.spark, catalog, schema, table)
        if exists:
            done = ctx.spark.table(target)
            # The binding is read from the stored cells: through a mask a reader would get
            # plaintext (Databricks) or an error (local masks), and find no cell to compare.
            stored = ctx.lakehouse.storage_table(ctx.spark, catalog, schema, table)
            _require_same_binding(ctx.spark.table(stored), columns, row_key_column)
            keys = [id_column] if id_column else []
            if SOURCE_FILE_COLUMN in incoming.columns and not id_column:
                keys = [SOURCE_FILE_COLUMN]
            if keys:
                missing = [k for k in keys if k not in done.columns]
                if missing:
                    raise ConfigError(
                        f"target {catalog}.{schema}.{table} has no column {missing[0]}"
                    )
                incoming = incoming.join(done.select(*keys).distinct(), on=keys, how="left_anti")
        total = incoming.count()

        version, _ = ctx.keyring.active_dek(ref.scope)
        encrypted = encrypt_columns(incoming, columns, keyring=ctx.keyring, table=ref,
                                    row_key=row_key_column or None)
        tags = {c: incoming.schema[c].dataType.simpleString() for c in columns}
        if not exists:
            ctx.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {ctx.lakehouse.schema(catalog, schema)}")
            ddl = _target_ddl(encrypted, tags, row_key_column)
            ctx.spark.sql(f"CREATE TABLE IF NOT EXISTS {target} ({ddl})")
        target_columns = ctx.spark.table(target).columns
        if sorted(target_columns) != sorted(encrypted.columns):
            raise ConfigError(
                f"input columns {sorted(encrypted.columns)} do not match the columns of "
                f"{catalog}.{schema}.{table}: {sorted(target_columns)}"
            )
        view = f"_encrypt_columns_{table}"
        encrypted.select(*[f"`{c}`" for c in target_columns]).createOrReplaceTempView(view)
        # Masks apply to reads only: rows go where the table stores them (locally, a masked
        # table's rows are under another name than the masking view).
        storage = ctx.lakehouse.storage_table(ctx.spark, catalog, schema, table)
        try:
            # One INSERT: on Delta one commit; a failure leaves the table as it was.
            ctx.spark.sql(f"INSERT INTO {storage} SELECT * FROM {quote(view)}")
        finally:
            ctx.spark.catalog.dropTempView(view)
        log.info("wrote %d row(s) into %s.%s.%s", total, catalog, schema, table)
        if mask:
            from ..spark.sql.deploy import apply_column_masks
            from ..spark.sql.target import SqlOptions

            apply_column_masks(ctx.spark, ctx.settings, ref, columns,
                               databricks=ctx.lakehouse.databricks,
                               options=SqlOptions(crypto_catalog=sql_crypto_catalog))
        skipped = 0
        if exists:
            skipped = read_source(ctx, source, source_format).count() - total
        return EncryptReport(f"{catalog}.{schema}.{table}", list(columns), version, total, skipped)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("encrypt_columns", "Encrypt columns of new input into a target table.")
    parser.add_argument("--source", required=True,
                        help="Input path (files, e.g. /Volumes/c/s/v/landing) or table name.")
    parser.add_argument("--source-format", default="csv",
                        help="csv, json, parquet, or table.")
    parser.add_argument("--target-table", required=True, help="[catalog.]schema.table to append.")
    parser.add_argument("--columns", required=True, help="Comma-separated columns to encrypt.")
    parser.add_argument("--id-column", default="",
                        help="Unique key; rows whose key is already in the target are skipped.")
    parser.add_argument("--mask", type=parse_bool, default=False,
                        help="Put the decrypt column mask on every encrypted column.")
    parser.add_argument("--row-key-column", default="",
                        help="Bind every cell to its row's value of this column (not "
                             "encrypted, never NULL); empty: cells are bound to their column "
                             "only. Readers must then give the same column.")
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
        )

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
