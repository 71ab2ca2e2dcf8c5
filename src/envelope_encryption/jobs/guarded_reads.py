"""What the jobs that rewrite or count cells share: their parameters and a checked read.

``reencrypt_columns``, ``status --tables`` and ``retire_dek --tables`` read tables whose
columns may be masked; they read them through the table's name, as every reader does, and
refuse unless what they read is cells (:mod:`envelope_encryption.spark.cells_guard`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import parse_bool
from ..errors import ConfigError
from ..identifiers import parse_table_name
from ..keyring.base import LEGACY_KEY_TYPE
from ..spark.cells_guard import census, has_legacy_key, require_cells
from ..spark.columns import TableRef, cells_per_version
from ..spark.sql.target import SqlOptions
from .domain_columns import domain_cells_in_use, scope_domain

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .common import JobContext

log = logging.getLogger(__name__)


def add_cells_guard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sql-job-group", default=SqlOptions.job_group,
        help="Group pattern whose members the column masks give the cells unchanged; the "
             "job must run as a member of it when a table it reads is masked.")
    parser.add_argument(
        "--allow-null-columns", type=parse_bool, default=False,
        help="Accept a checked column that is NULL in every row of a non-empty table (what a "
             "non-member reads through the default mask).")


def read_cells(ctx: JobContext, table: str, *, job_group: str,
               allow_null_columns: bool) -> tuple[TableRef, DataFrame]:
    """A table read through its name, refused unless its masked columns read as cells."""
    ref = TableRef(*parse_table_name(table, ctx.settings.catalog))
    df = ctx.spark.table(ctx.lakehouse.table(ref.catalog, ref.schema, ref.table))
    require_cells(
        ctx.spark, df, ref, (), lakehouse=ctx.lakehouse,
        job_group=SqlOptions(job_group=job_group).job_group_name(ref.catalog, ref.schema),
        legacy=has_legacy_key(ctx.keyring, ref.scope), allow_null_columns=allow_null_columns,
    )
    return ref, df


def cells_in_use(ctx: JobContext, scope: str, version: int, tables: Sequence[str], *,
                 job_group: str, allow_null_columns: bool) -> int:
    """How many values of ``tables`` need DEK ``version`` of ``scope`` to be read.

    ``tables`` must be every table that may hold the scope's cells: the job cannot find
    them itself (the keyring does not know where its cells are), so with no table of the
    scope among them the count would prove nothing, and it is refused. Cells naming the
    version count; for an imported legacy DEK so do the header-less legacy values of every
    STRING column, which name no version. Every table is checked (masks, cells) before any
    is counted.

    An equality domain's scope has no table of its own: its deterministic cells and blind
    indexes are counted in its registered columns and those of ``tables``
    (:func:`.domain_columns.domain_cells_in_use`).
    """
    if scope_domain(scope) is not None:
        return domain_cells_in_use(ctx, scope, version, tables, job_group=job_group,
                                   allow_null_columns=allow_null_columns)
    read = [read_cells(ctx, table, job_group=job_group, allow_null_columns=allow_null_columns)
            for table in tables]
    if not any(ref.scope == scope for ref, _ in read):
        raise ConfigError(
            f"none of the tables given is in {scope}: give every table that holds cells of "
            f"{scope} (--tables), so that the job can tell whether v{version} is still used")
    legacy = any(r.version == version and r.key_type == LEGACY_KEY_TYPE
                 for r in ctx.keyring.versions(scope))
    total = 0
    for ref, df in read:
        found = cells_per_version(df).get(version, 0)
        if legacy and ref.scope == scope:
            strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
            seen = census(df, ref, strings, legacy=True)
            found += sum(c.legacy for c in seen.columns.values())
        if found:
            log.info("%s.%s.%s holds %d value(s) of %s v%d", ref.catalog, ref.schema,
                     ref.table, found, scope, version)
        total += found
    return total
