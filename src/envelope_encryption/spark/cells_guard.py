"""Jobs that rewrite or count cells refuse to run unless what they read is cells.

A column mask applies to every reader, the jobs' principal included: a principal outside the
job group reads what the mask gives non-members (NULL by default, ``[REDACTED]``, or the
cell), and a member of the reader group reads plaintext. Rewriting that loses the data;
counting it retires DEK versions still in use. :func:`require_cells` runs before anything is
written or retired and checks both what can be known about the principal and what it reads:

(a) if the table has masked columns, or whether it has cannot be told, the principal must
    be a member of the job group (the masks return it the cells unchanged);
(b) every non-NULL value of each checked column is a cell (randomized, subject-keyed or
    deterministic: what a mask gives the job group unchanged; or, where the scope has an
    imported legacy key, a legacy value), and a column of a non-empty table is not entirely
    NULL, which is what a non-member reads through the default mask, unless the caller says
    so (``--allow-null-columns``).

:func:`checked_rewrite` carries the counts into the rewrite itself: the statement that
writes fails, before it commits, if a column's number of non-NULL values changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..identifiers import quote, sql_string, validate_identifier
from ..keyring.base import LEGACY_KEY_TYPE
from ..keyring.keyring import Keyring
from ..lakehouse import Lakehouse
from .columns import TableRef
from .sql.local_masks import local_groups, local_masked_columns

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

_LEGACY_MIN_BYTES = 12 + 16  # IV and GCM tag: the shortest legacy value


class NotCellsError(ConfigError):
    """What a job would read is not (only) cells: it refuses before changing anything."""


@dataclass(frozen=True)
class ColumnCensus:
    rows: int
    non_null: int
    cells: int
    legacy: int

    @property
    def others(self) -> int:
        return self.non_null - self.cells - self.legacy


@dataclass(frozen=True)
class CellCensus:
    """What a job read: rows, and per checked column non-NULL values and cells."""

    table: str
    rows: int
    columns: dict[str, ColumnCensus] = field(default_factory=dict)


def has_legacy_key(keyring: Keyring, scope: str) -> bool:
    """Whether the scope has an imported legacy key that decrypts (its values carry no header)."""
    return any(r.key_type == LEGACY_KEY_TYPE and r.decrypts
               for r in keyring.versions(scope))


def masked_columns(spark: SparkSession, lakehouse: Lakehouse,
                   table: TableRef) -> dict[str, str] | None:
    """Masked columns of a table and their mask function; None when that cannot be told.

    On Databricks from ``<catalog>.information_schema.column_masks`` (Public Preview; it
    lists only what the principal may see); locally from the masking view under the name.
    """
    if not lakehouse.databricks:
        return {c: "local mask" for c in
                local_masked_columns(spark, table.catalog, table.schema, table.table)}
    try:
        rows = spark.sql(
            f"SELECT column_name, mask_catalog, mask_schema, mask_name FROM "
            f"{quote(table.catalog, 'catalog')}.information_schema.column_masks "
            "WHERE schema_name = :schema AND table_name = :table",
            args={"schema": table.schema, "table": table.table},
        ).collect()
    except Exception:  # any failure means: cannot tell
        return None
    return {r["column_name"]: f"{r['mask_catalog']}.{r['mask_schema']}.{r['mask_name']}"
            for r in rows}


def is_member(spark: SparkSession, lakehouse: Lakehouse, group: str) -> bool:
    """Whether the current principal is in ``group`` (False when that cannot be told)."""
    if not group:
        return False
    if not lakehouse.databricks:
        return group in local_groups(spark)
    try:
        row = spark.sql(f"SELECT is_account_group_member({sql_string(group)}) AS m").first()
    except Exception:  # cannot tell is not a yes
        return False
    return bool(row and row["m"])


def _require_job_group(spark: SparkSession, lakehouse: Lakehouse, name: str,
                       masks: dict[str, str] | None, job_group: str) -> None:
    if masks == {}:
        return
    seen = ("whether it has column masks cannot be told (information_schema.column_masks "
            "is not readable)" if masks is None
            else f"columns {', '.join(sorted(masks))} are masked")
    if not job_group:
        raise NotCellsError(
            f"{name}: {seen} and no job group is configured, so this job would read the "
            "masks' output, not the cells. Configure --sql-job-group (and deploy the masks "
            "with it) and run the job as a member of that group")
    if not is_member(spark, lakehouse, job_group):
        raise NotCellsError(
            f"{name}: {seen}, and this job's principal is not a member of {job_group}: it "
            "would read the masks' output (NULL, [REDACTED] or plaintext), not the cells, "
            f"and lose data. Run the job as a principal in {job_group}")


def require_job_group(spark: SparkSession, lakehouse: Lakehouse, table: TableRef,
                      job_group: str) -> None:
    """(a) alone: refuse (:class:`NotCellsError`) unless the principal reads the table's
    masked columns as cells. For a job that looks at a value (e.g. which form its cells
    have) before :func:`require_cells` counts them."""
    name = f"{table.catalog}.{table.schema}.{table.table}"
    _require_job_group(spark, lakehouse, name, masked_columns(spark, lakehouse, table),
                       job_group)


def _census_batches(columns: Sequence[str], legacy: bool):
    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import binascii

        import pyarrow as pa
        import pyarrow.compute as pc

        from envelope_encryption.cell.equality import DETERMINISTIC_CELL_REGEX
        from envelope_encryption.cell.format import CELL_REGEX
        from envelope_encryption.cell.subject import SUBJECT_CELL_REGEX

        # Every stored cell form counts: the check tells cells from what a mask gives
        # readers who are not in the job group (plaintext, [REDACTED], NULL).
        any_cell = "|".join(f"(?:{regex})" for regex in
                            (CELL_REGEX, SUBJECT_CELL_REGEX, DETERMINISTIC_CELL_REGEX))

        def legacy_value(value: str) -> bool:
            try:
                payload = binascii.a2b_base64(value)
            except (binascii.Error, ValueError):
                return False
            return (len(payload) >= _LEGACY_MIN_BYTES
                    and binascii.b2a_base64(payload, newline=False).decode("ascii") == value)

        for batch in batches:
            rows, non_null, cells, legacies = [], [], [], []
            for name in columns:
                values = batch.column(batch.schema.get_field_index(name))
                # The cell grammar over the whole column in Arrow (NULL stays NULL): only
                # the values that are not cells, where legacy values count, reach Python.
                shaped = pc.match_substring_regex(values, any_cell)
                rows.append(len(values))
                non_null.append(len(values) - values.null_count)
                cells.append(pc.sum(shaped).as_py() or 0)
                rest = pc.filter(values, pc.invert(shaped)).to_pylist() if legacy else []
                legacies.append(sum(1 for v in rest if legacy_value(v)))
            yield pa.RecordBatch.from_arrays(
                [pa.array(list(columns), pa.string()), pa.array(rows, pa.int64()),
                 pa.array(non_null, pa.int64()), pa.array(cells, pa.int64()),
                 pa.array(legacies, pa.int64())],
                names=["column", "rows", "non_null", "cells", "legacy"])

    return count


def census(df: DataFrame, table: TableRef, columns: Sequence[str],
           legacy: bool = False) -> CellCensus:
    """Rows, non-NULL values, cells and legacy values of ``columns``: one pass, no value kept."""
    from pyspark.sql import functions as F

    name = f"{table.catalog}.{table.schema}.{table.table}"
    if not columns:
        return CellCensus(name, df.count())
    for column in columns:
        if column not in df.columns:
            raise ConfigError(f"{name} has no column {column}")
    selected = df.select(*[F.col(quote(c, "column")).cast("string").alias(c) for c in columns])
    counted = selected.mapInArrow(
        _census_batches(list(columns), legacy),
        "column string, rows long, non_null long, cells long, legacy long",
    ).groupBy("column").agg(*[F.sum(c).alias(c) for c in
                             ("rows", "non_null", "cells", "legacy")]).collect()
    by_column = {r["column"]: ColumnCensus(r["rows"], r["non_null"], r["cells"], r["legacy"])
                 for r in counted}
    rows = next(iter(by_column.values())).rows if by_column else 0
    empty = ColumnCensus(0, 0, 0, 0)
    return CellCensus(name, rows, {c: by_column.get(c, empty) for c in columns})


def census_matching(df: DataFrame, name: str, columns: Sequence[str],
                    regex: str) -> CellCensus:
    """Rows, and per column non-NULL values and values matching ``regex`` (a Spark ``rlike``
    pattern, anchored): one aggregation, no value kept. For jobs that expect one form only
    (subject-keyed cells, an equality domain's values), where :func:`census`'s "any cell"
    would be too lenient."""
    from pyspark.sql import functions as F

    counts = [F.count(F.lit(1)).alias("rows")]
    for n, column in enumerate(columns):
        col = F.col(quote(column, "column"))
        counts += [F.count(col).alias(f"n{n}"),
                   F.count(F.when(col.rlike(regex), 1)).alias(f"c{n}")]
    row = df.agg(*counts).first()
    rows = row["rows"] if row else 0
    return CellCensus(name, rows, {c: ColumnCensus(rows, row[f"n{n}"], row[f"c{n}"], 0)
                                   for n, c in enumerate(columns)})


def require_cells(
    spark: SparkSession, df: DataFrame, table: TableRef, columns: Sequence[str], *,
    lakehouse: Lakehouse, job_group: str, legacy: bool = False,
    allow_null_columns: bool = False,
) -> CellCensus:
    """Refuse (:class:`NotCellsError`) unless ``df``, read from ``table``, holds cells.

    ``columns`` are the columns that must hold cells; the table's masked columns are
    checked too. ``legacy``: the scope has an imported legacy key, so header-less legacy
    values are cells as well. Returns what was read, for :func:`checked_rewrite`.
    """
    name = f"{table.catalog}.{table.schema}.{table.table}"
    masks = masked_columns(spark, lakehouse, table)
    _require_job_group(spark, lakehouse, name, masks, job_group)
    checked = [validate_identifier(c, "column") for c in columns]
    checked += [c for c in sorted(masks or {}) if c not in checked and c in df.columns]
    seen = census(df, table, checked, legacy)
    fix = (f"Run the job as a principal in {job_group}, whose reads the masks leave as cells"
           if job_group else "Configure a job group and run the job as a member of it")
    for column, counts in seen.columns.items():
        if counts.others:
            raise NotCellsError(
                f"{name}, column {column}: {counts.others} of {counts.non_null} non-NULL "
                "values are not cells: plaintext or [REDACTED] from a mask? Nothing was "
                f"changed. {fix}")
        if seen.rows and not counts.non_null and not allow_null_columns:
            raise NotCellsError(
                f"{name}, column {column}: {seen.rows} of {seen.rows} values NULL, which is "
                "what a non-member reads through the default mask. Nothing was changed. "
                f"{fix}; if the column really holds no value, pass --allow-null-columns=true")
    return seen


def checked_rewrite(spark: SparkSession, rewritten: DataFrame, seen: CellCensus,
                    view: str) -> DataFrame:
    """``rewritten``, failing when read (before any write commits) unless it has the rows
    and, per checked column, the non-NULL values that :func:`require_cells` saw."""
    validate_identifier(view, "view")
    rewritten.createOrReplaceTempView(view)
    checks = [f"count(*) = {int(seen.rows)}"]
    checks += [f"count({quote(c, 'column')}) = {int(counts.non_null)}"
               for c, counts in seen.columns.items()]
    message = (f"envelope encryption: the rewrite of {seen.table} does not have the rows and "
               "non-NULL values read before it (the table changed, or the masks now give "
               "this principal something else); nothing was written")
    return spark.sql(
        f"SELECT * FROM {quote(view)} WHERE CASE WHEN (SELECT {' AND '.join(checks)} "
        f"FROM {quote(view)}) THEN TRUE ELSE raise_error('{message}') END"
    )
