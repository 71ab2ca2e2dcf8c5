"""Column masks on local Spark that apply, as in Unity Catalog, to every reader of the table.

Unity Catalog evaluates a column mask for every reader of the table, its owner and the
jobs' principal included. Locally a masked table is therefore two objects:

- ``<catalog>__<schema>.<table>__unmasked``: the stored rows (parquet), which jobs write to
  (:meth:`envelope_encryption.lakehouse.Lakehouse.storage_table`);
- ``<catalog>__<schema>.<table>``: a PERSISTENT view under the table's name that applies the
  masks, so every read of that name, by any local principal, goes through them. Its
  property ``envelope.masked_columns`` lists the masked columns.

Spark forbids a persistent view to reference temporary functions or Python UDFs, so the view
cannot call the rendered ``decrypt_<schema>`` (a temporary function over the pandas unwrap
UDF). It implements in plain SQL, in the order of the rendered ``open_cell``, the paths that
need no key: NULL stays NULL; a member of the job group reads the cell unchanged; a member
of the reader group, who would need a key, gets an error saying that local member reads go
through :func:`.local_unity_catalog.read_table_as` (stricter than the platform, never
kinder); everyone else reads the non-member mode (NULL, ``[REDACTED]`` or the cell).

Who "the current local principal" is: the groups in the JVM system property
``envelope.local.groups``, which the view reads with ``reflect`` (a built-in, allowed in a
persistent view). It lives as long as the process, so no stale membership survives into the
next run; a new process has no groups (a non-member) until :func:`set_local_groups` is
called, by ``LocalSqlEnvironment.set_groups`` or from ``ENVELOPE_LOCAL_GROUPS`` when a local
job gets its session (:func:`sync_local_groups_from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ...config import Settings
from ...errors import ConfigError
from ...identifiers import quote, validate_identifier, validate_principal
from ...lakehouse import UNMASKED_SUFFIX, Lakehouse
from ..columns import TableRef
from .cell_shape import is_cell_sql
from .target import REDACTION, SqlOptions

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

GROUPS_ENV = "ENVELOPE_LOCAL_GROUPS"
GROUPS_PROPERTY = "envelope.local.groups"
MASKED_COLUMNS_PROPERTY = "envelope.masked_columns"
_LOCAL = Lakehouse(databricks=False)


def groups_from_env() -> list[str]:
    """The local principal's groups named by ``ENVELOPE_LOCAL_GROUPS`` (comma-separated)."""
    return [g.strip() for g in os.environ.get(GROUPS_ENV, "").split(",") if g.strip()]


def set_local_groups(spark: SparkSession, groups: Iterable[str]) -> list[str]:
    """Make the current local principal a member of exactly ``groups`` (for this process)."""
    names = sorted({validate_principal(g, "group") for g in groups})
    system = spark.sparkContext._jvm.java.lang.System  # type: ignore[union-attr]
    # Principal names cannot contain a comma (validate_principal), so it separates them.
    system.setProperty(GROUPS_PROPERTY, ",".join(names))
    return names


def local_groups(spark: SparkSession) -> list[str]:
    """The groups the local masks see the current principal in."""
    system = spark.sparkContext._jvm.java.lang.System  # type: ignore[union-attr]
    value = system.getProperty(GROUPS_PROPERTY) or ""
    return [g for g in value.split(",") if g]


def sync_local_groups_from_env(spark: SparkSession) -> list[str]:
    """The principal of a local job run is the one ``ENVELOPE_LOCAL_GROUPS`` describes."""
    return set_local_groups(spark, groups_from_env())


def _member_sql(group: str) -> str:
    if not group:
        return "FALSE"
    # A scalar subquery: evaluated once per query, not per row.
    return ("array_contains(split(coalesce((SELECT reflect('java.lang.System', 'getProperty', "
            f"'{GROUPS_PROPERTY}')), ''), ','), '{validate_principal(group, 'group')}')")


def mask_expression(column: str, options: SqlOptions, catalog: str, schema: str) -> str:
    """The plain-SQL mask of one column, as the view under the table's name applies it."""
    reader = options.group(options.reader_group, catalog, schema)
    jobs = options.job_group_name(catalog, schema)
    col = quote(column, "column")
    non_member = {
        "null": "CAST(NULL AS STRING)",
        "redacted": f"'{REDACTION}'",
        # Fail closed, as the rendered open_cell: only a value with the shape of a cell.
        "ciphertext": f"CASE WHEN {is_cell_sql(col, bool(options.equality_domains))} "
                      f"THEN {col} END",
    }[options.non_member]
    refusal = (f"envelope encryption: a member of {reader} reads plaintext locally only through "
               "read_table_as (the local mask on the table name has no key)")
    return (f"CASE WHEN {col} IS NULL THEN NULL "
            f"WHEN {_member_sql(jobs)} THEN {col} "
            f"WHEN {_member_sql(reader)} THEN raise_error('{refusal}') "
            f"ELSE {non_member} END")


def local_masked_columns(spark: SparkSession, catalog: str, schema: str,
                         table: str) -> list[str]:
    """The columns a local mask applies to on ``catalog.schema.table`` (none if unmasked)."""
    if not _LOCAL.table_exists(spark, catalog, schema, table + UNMASKED_SUFFIX):
        return []
    if not _LOCAL.table_exists(spark, catalog, schema, table):
        # Interrupted between the rename and the view: the rows are hidden, nothing is
        # readable under the name; apply the masks again to finish.
        raise ConfigError(f"{catalog}.{schema}.{table} is half-masked (its rows are in "
                          f"{table}{UNMASKED_SUFFIX}, no view): apply the column masks again")
    rows = spark.sql(
        f"SHOW TBLPROPERTIES {_LOCAL.table(catalog, schema, table)} ('{MASKED_COLUMNS_PROPERTY}')"
    ).collect()
    value = rows[0]["value"] if rows else ""
    if not value or "does not have property" in value:
        raise ConfigError(f"{catalog}.{schema}.{table}: its masking view lists no columns")
    return [c for c in value.split(",") if c]


def apply_local_masks(spark: SparkSession, settings: Settings, ref: TableRef,
                      columns: Sequence[str], options: SqlOptions | None = None) -> str:
    """Mask ``columns`` of a local table for every reader of its name; returns that name.

    Idempotent; masks already on other columns of the table stay on.
    """
    options = options or SqlOptions()
    if ref.schema not in settings.schemas:
        raise ConfigError(f"schema {ref.schema} is not one of --schemas: no decrypt function")
    wanted = [validate_identifier(c, "column") for c in columns]
    name = _LOCAL.table(ref.catalog, ref.schema, ref.table)
    storage = _LOCAL.table(ref.catalog, ref.schema, ref.table + UNMASKED_SUFFIX)
    masked = set(local_masked_columns(spark, ref.catalog, ref.schema, ref.table)
                 if _LOCAL.table_exists(spark, ref.catalog, ref.schema, ref.table) else [])
    if not _LOCAL.table_exists(spark, ref.catalog, ref.schema, ref.table + UNMASKED_SUFFIX):
        if not _LOCAL.table_exists(spark, ref.catalog, ref.schema, ref.table):
            raise ConfigError(f"table {ref.catalog}.{ref.schema}.{ref.table} does not exist")
        spark.sql(f"ALTER TABLE {name} RENAME TO {storage}")
    existing = spark.table(storage).columns
    missing = sorted(set(wanted) - set(existing))
    if missing:
        raise ConfigError(f"{ref.catalog}.{ref.schema}.{ref.table} has no column "
                          f"{', '.join(missing)}")
    masked |= set(wanted)
    select = ", ".join(
        f"{mask_expression(c, options, ref.catalog, ref.schema)} AS {quote(c)}" if c in masked
        else quote(c, "column")
        for c in existing
    )
    listed = ",".join(c for c in existing if c in masked)
    spark.sql(f"CREATE OR REPLACE VIEW {name} "
              f"TBLPROPERTIES ('{MASKED_COLUMNS_PROPERTY}' = '{listed}') "
              f"AS SELECT {select} FROM {storage}")
    return name
