"""Where an equality domain's values live, and how many of each domain key version remain.

A domain's key scope (``<catalog>.$equality.<domain>``) owns no schema: its deterministic
cells (``ed1``) and blind indexes (``bi1``) sit in columns of tables of *other* schemas,
registered in the registry of encrypted columns under the domain's scope
(``encrypt_columns --deterministic-columns/--blind-index-columns``, or ``table_registry``).
So where a schema's jobs check "the tables of the scope", a domain's check "the columns of
the scope": the registered ones, and those of the tables given (``--tables``).

The lifecycle jobs name a domain's scope with ``--domain ssn`` (or ``--schema`` for a
schema's scope): no ``$`` to quote in a shell.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import ConfigError
from ..identifiers import EQUALITY_SCOPE_MARK, domain_scope, parse_table_name
from ..spark.cells_guard import (
    CellCensus,
    NotCellsError,
    _require_job_group,
    census_matching,
    masked_columns,
)
from ..spark.columns import TableRef, cells_per_version
from ..spark.equality_columns import EQUALITY_MARKERS, EQUALITY_REGEX
from ..spark.sql.target import SqlOptions
from .common import log
from .table_registry import table_registry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .common import JobContext


def scope_domain(scope: str) -> str | None:
    """The domain of an equality domain's key scope; None for a schema's scope."""
    parts = scope.split(".")
    return parts[2] if len(parts) == 3 and parts[1] == EQUALITY_SCOPE_MARK else None


def add_scope_arguments(parser: argparse.ArgumentParser, schema_help: str,
                        *, required: bool = True) -> None:
    """``--schema`` (a schema's DEK scope) or ``--domain`` (an equality domain's key)."""
    parser.add_argument("--schema", default="", help=schema_help)
    parser.add_argument(
        "--domain", default="",
        help="Equality domain whose key to change instead of a schema's DEK (its scope is "
             "<catalog>.$equality.<domain>; docs/equality.md)." +
             ("" if required else " Give --schema or --domain, not both."))


def key_scope(settings: Settings, schema: str, domain: str, *, required: bool = True) -> str:
    """The key scope of ``--schema`` or ``--domain`` (exactly one of them; with
    ``required=False`` neither means the first schema of the settings)."""
    if schema and domain:
        raise ConfigError("give --schema or --domain, not both")
    if domain:
        return domain_scope(settings.catalog, domain)
    if not schema and required:
        raise ConfigError("give --schema (a schema's DEK) or --domain (an equality domain)")
    return settings.scope(schema or settings.schemas[0])


def domain_columns(ctx: JobContext, scope: str, tables: Sequence[str]) -> dict[str, list[str]]:
    """The columns that may hold values of a domain scope, per table (``catalog.schema.table``):
    its registered columns (of ``tables`` only, when given). A given table with no
    registered column of the scope has every STRING column counted: a column of another
    domain then counts as well, which can only refuse a change, never allow one."""
    registered: dict[str, list[str]] = {}
    for entry in table_registry(ctx).entries():
        if entry.scope == scope:
            registered.setdefault(entry.table_name, []).append(entry.column_name)
    if not tables:
        if registered:
            log.info("checking the column(s) registered for %s: %s", scope, ", ".join(
                f"{t}.{c}" for t, cols in sorted(registered.items()) for c in cols))
        return registered
    chosen: dict[str, list[str]] = {}
    for table in tables:
        catalog, schema, name = parse_table_name(table, ctx.settings.catalog)
        full = f"{catalog}.{schema}.{name}"
        if full in registered:
            chosen[full] = registered[full]
            continue
        if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
            raise ConfigError(f"table {full} does not exist")
        fields = ctx.spark.table(ctx.lakehouse.table(catalog, schema, name)).schema.fields
        chosen[full] = [f.name for f in fields if f.dataType.simpleString() == "string"]
        log.info("%s has no column registered for %s: counting all its STRING columns",
                 full, scope)
    return {t: cols for t, cols in chosen.items() if cols}


def domain_census(df: DataFrame, name: str, columns: Sequence[str]) -> CellCensus:
    """Rows, and per column non-NULL values and values of a domain's forms (``ed1`` cells,
    ``bi1`` indexes): one pass, no value kept."""
    return census_matching(df, name, columns, EQUALITY_REGEX)


def read_domain_values(ctx: JobContext, table: str, columns: Sequence[str], *,
                       job_group: str, allow_null_columns: bool,
                       ) -> tuple[TableRef, DataFrame, CellCensus]:
    """A table read through its name, refused (:class:`NotCellsError`) unless each of
    ``columns`` holds only deterministic cells or blind indexes (and NULL): what a
    principal outside the job group reads through a mask is neither."""
    ref = TableRef(*parse_table_name(table, ctx.settings.catalog))
    name = f"{ref.catalog}.{ref.schema}.{ref.table}"
    group = SqlOptions(job_group=job_group).job_group_name(ref.catalog, ref.schema)
    _require_job_group(ctx.spark, ctx.lakehouse, name,
                       masked_columns(ctx.spark, ctx.lakehouse, ref), group)
    df = ctx.spark.table(ctx.lakehouse.table(ref.catalog, ref.schema, ref.table))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"{name} has no column(s) {', '.join(missing)}")
    seen = domain_census(df, name, columns)
    for column, counts in seen.columns.items():
        if counts.others:
            raise NotCellsError(
                f"{name}, column {column}: {counts.others} of {counts.non_null} non-NULL "
                "values are neither deterministic cells nor blind indexes (plaintext, "
                f"another form, or a mask's output?). Nothing was changed. Run the job as a "
                f"principal in {group}, or name the right columns")
        if seen.rows and not counts.non_null and not allow_null_columns:
            raise NotCellsError(
                f"{name}, column {column}: every value is NULL, which is what a non-member "
                "reads through the default mask. Nothing was changed; if the column really "
                "holds no value, pass --allow-null-columns=true")
    return ref, df, seen


@dataclass(frozen=True)
class DomainColumnCells:
    """Values of each domain key version in one registered column."""

    scope: str
    table: str
    column: str
    cells_per_version: dict[int, int]


def domain_column_cells(ctx: JobContext, scope: str, tables: Sequence[str], *,
                        job_group: str, allow_null_columns: bool) -> list[DomainColumnCells]:
    """Per column of a domain scope (:func:`domain_columns`), its values per domain key
    version. Every table is checked before any is counted."""
    read = [(read_domain_values(ctx, table, columns, job_group=job_group,
                                allow_null_columns=allow_null_columns), columns)
            for table, columns in sorted(domain_columns(ctx, scope, tables).items())]
    return [DomainColumnCells(scope, seen.table, column,
                              cells_per_version(df, [column], markers=EQUALITY_MARKERS))
            for (_, df, seen), columns in read for column in columns]


def domain_cells_in_use(ctx: JobContext, scope: str, version: int, tables: Sequence[str], *,
                        job_group: str, allow_null_columns: bool) -> int:
    """How many values of a domain's columns need key ``version`` of the domain scope.

    With no registered or given column of the scope the count would prove nothing, and it
    is refused."""
    counted = domain_column_cells(ctx, scope, tables, job_group=job_group,
                                  allow_null_columns=allow_null_columns)
    if not counted:
        raise ConfigError(
            f"no column is registered for {scope}, and none of the tables given holds one: "
            f"register the domain's columns (table_registry) or give every table holding its "
            f"values (--tables), so that the job can tell whether v{version} is still used")
    total = 0
    for found in counted:
        n = found.cells_per_version.get(version, 0)
        if n:
            log.info("%s.%s holds %d value(s) of %s v%d", found.table, found.column, n,
                     scope, version)
        total += n
    return total


def registered_domain_scopes(ctx: JobContext) -> list[str]:
    """The domain scopes with at least one active registered column."""
    return sorted({e.scope for e in table_registry(ctx).entries()
                   if scope_domain(e.scope) is not None})
