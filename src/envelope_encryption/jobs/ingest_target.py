"""The target table of ``encrypt_columns``: its DDL, and the checks before rows are added.

Shared by both input modes (files by checkpoint, a table by id): the table is created from
the encrypted rows' schema when missing, every nested source field name is validated before
any DDL, the input's columns must be the target's, and new cells must be bound to rows
exactly as the target's cells are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cell.format import CELL_PREFIX, ROW_BOUND_SUFFIX
from ..errors import ConfigError
from ..identifiers import quote, validate_identifier
from ..spark.columns import TableRef

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

    from .common import JobContext


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


def target_ddl(df: DataFrame, encrypted: dict[str, str], row_key: str = "",
               notes: Mapping[str, str] | None = None) -> str:
    """The columns of a new target; ``notes``: comments of the other STRING columns the job
    writes (deterministic cells, blind indexes)."""
    bound = f", bound to rows by {row_key}" if row_key else ""
    parts = []
    for field in df.schema.fields:
        if notes and field.name in notes:
            parts.append(f"{quote(field.name, 'column')} STRING COMMENT "
                         f"'{notes[field.name]}'")
        elif field.name in encrypted:
            parts.append(
                f"{quote(field.name, 'column')} STRING COMMENT "
                f"'envelope-encrypted cells (ee1) of {encrypted[field.name]}{bound}'"
            )
        else:
            parts.append(f"{quote(field.name, 'column')} {sql_type(field.dataType, field.name)}")
    return ", ".join(parts)


def require_same_binding(done: DataFrame, columns: Sequence[str], row_key: str) -> None:
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


@dataclass
class EncryptReport:
    """What a run did. ``rows_skipped``: rows read but not written (their id, or their file
    in a backfilled target, was already there). ``files_read``: files of a file source read
    by this run (None for a table source); ``batches_replayed``: micro-batches found
    already written (after a crash between write and checkpoint commit)."""

    target: str
    columns: list[str]
    dek_version: int
    rows_written: int
    rows_skipped: int
    files_read: int | None = None
    batches_replayed: int = 0
    equality: str = ""  # the deterministic and blind-index columns, described

    def __str__(self) -> str:
        files = "" if self.files_read is None else f" from {self.files_read} new file(s)"
        encrypted = (f"{', '.join(self.columns)} encrypted (DEK v{self.dek_version})"
                     if self.columns else "no randomized column")
        equality = f"; {self.equality}" if self.equality else ""
        return (
            f"{self.target}: {self.rows_written} row(s) written{files} with "
            f"{encrypted}{equality}; {self.rows_skipped} already present, skipped"
        )


def validate_source_fields(schema: StructType) -> None:
    """Every source column and nested field name is an identifier (before any DDL)."""
    for field in schema.fields:
        sql_type(field.dataType, validate_identifier(field.name, "source column"))


@dataclass(frozen=True)
class Target:
    """The target table, ready for rows: where reads and writes go, its columns in order."""

    name: str  # the table's name (reads, masks)
    storage: str  # where its rows are written (locally masked tables keep them elsewhere)
    columns: list[str]
    existed: bool


def prepare_target(ctx: JobContext, ref: TableRef, encrypted: DataFrame,
                   columns: Sequence[str], row_key: str, plain_schema: StructType,
                   notes: Mapping[str, str] | None = None) -> Target:
    """Create the target from ``encrypted``'s schema when missing (``notes``: see
    :func:`target_ddl`); else check its columns and cell binding against the new rows'."""
    lakehouse, spark = ctx.lakehouse, ctx.spark
    name = lakehouse.table(ref.catalog, ref.schema, ref.table)
    existed = lakehouse.table_exists(spark, ref.catalog, ref.schema, ref.table)
    if existed:
        # The binding is read from the stored cells: through a mask a reader would get
        # plaintext (Databricks) or an error (local masks), and find no cell to compare.
        stored = lakehouse.storage_table(spark, ref.catalog, ref.schema, ref.table)
        require_same_binding(spark.table(stored), columns, row_key)
    else:
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {lakehouse.schema(ref.catalog, ref.schema)}")
        tags = {c: plain_schema[c].dataType.simpleString() for c in columns}
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} "
                  f"({target_ddl(encrypted, tags, row_key, notes)})")
    target_columns = spark.table(name).columns
    if sorted(target_columns) != sorted(encrypted.columns):
        raise ConfigError(
            f"input columns {sorted(encrypted.columns)} do not match the columns of "
            f"{ref.catalog}.{ref.schema}.{ref.table}: {sorted(target_columns)}"
        )
    storage = lakehouse.storage_table(spark, ref.catalog, ref.schema, ref.table)
    return Target(name, storage, target_columns, existed)
