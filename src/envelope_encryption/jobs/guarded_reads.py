"""What the jobs that rewrite or count cells share: their parameters and a checked read.

``reencrypt_columns``, ``status --tables`` and ``retire_dek --tables`` read tables whose
columns may be masked; they read them through the table's name, as every reader does, and
refuse unless what they read is cells (:mod:`envelope_encryption.spark.cells_guard`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..config import parse_bool
from ..identifiers import parse_table_name
from ..spark.cells_guard import has_legacy_key, require_cells
from ..spark.columns import TableRef
from ..spark.sql.target import SqlOptions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .common import JobContext


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
