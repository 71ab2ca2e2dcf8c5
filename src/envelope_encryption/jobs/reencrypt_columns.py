"""Job ``reencrypt_columns``: move a table's cells to the active DEK version.

Cells of older versions (and, for scopes with an imported legacy DEK, the original
notebooks' header-less cells) are decrypted and encrypted again under the active version;
cells already under it are kept. The table is replaced in one step: on Databricks an
``INSERT OVERWRITE`` (one Delta commit); locally a staging table swapped in by rename, the
old table dropped only after the swap. A cell that does not decrypt fails the job before
anything is replaced.

Run it as a member of the job group (``--sql-job-group``, default
``<catalog>.crypto.jobs``): the column masks give that group the cells unchanged. Anyone else
reads the masks' output (NULL, ``[REDACTED]`` or plaintext), so the job first checks what it
reads (:func:`envelope_encryption.spark.cells_guard.require_cells`) and refuses unless it is
cells, and the rewrite itself fails before it commits if a column's number of non-NULL
values changed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Settings, split_list
from ..errors import ConfigError
from ..identifiers import parse_table_name, quote, validate_identifier
from ..spark.cells_guard import checked_rewrite, has_legacy_key, require_cells
from ..spark.columns import TableRef, cells_per_version, reencrypt_columns
from ..spark.sql.target import SqlOptions
from .common import build_context, job_parser, log, run_main
from .guarded_reads import add_cells_guard_arguments


@dataclass
class ReencryptReport:
    table: str
    active_version: int
    before: dict[int, int]
    after: dict[int, int]

    def __str__(self) -> str:
        return (f"{self.table}: cells per DEK version before {self.before}, after {self.after} "
                f"(active v{self.active_version})")


def run(settings: Settings, spark=None, *, table: str, columns: Sequence[str],
        job_group: str = SqlOptions.job_group,
        allow_null_columns: bool = False) -> ReencryptReport:
    with build_context(settings, spark) as ctx:
        catalog, schema, name = parse_table_name(table, settings.catalog)
        ref = TableRef(catalog, schema, name)
        columns = [validate_identifier(c, "column") for c in columns]
        if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
            raise ConfigError(f"table {catalog}.{schema}.{name} does not exist")
        # Read through the table's name, masks and all, exactly as every other reader does.
        target = ctx.lakehouse.table(catalog, schema, name)
        current = ctx.spark.table(target)
        seen = require_cells(
            ctx.spark, current, ref, columns, lakehouse=ctx.lakehouse,
            job_group=SqlOptions(job_group=job_group).job_group_name(catalog, schema),
            legacy=has_legacy_key(ctx.keyring, ref.scope), allow_null_columns=allow_null_columns,
        )
        before = cells_per_version(current, columns)
        version, _ = ctx.keyring.active_dek(ref.scope)
        moved = checked_rewrite(
            ctx.spark, reencrypt_columns(current, columns, keyring=ctx.keyring, table=ref), seen,
            f"_reencrypt_{name}")

        # Masks apply to reads only: the rows are written where they are stored.
        storage = ctx.lakehouse.storage_table(ctx.spark, catalog, schema, name)
        if ctx.lakehouse.databricks:
            # One statement, one Delta commit; the count check fails it before it commits.
            view = f"_reencrypted_{name}"
            moved.createOrReplaceTempView(view)
            ctx.spark.sql(f"INSERT OVERWRITE {storage} SELECT * FROM {quote(view)}")
        else:
            # Parquet cannot overwrite a table it is reading: stage, then swap by rename.
            stored = storage.rsplit(".", 1)[1].strip("`")
            staging = ctx.lakehouse.table(catalog, schema, f"{stored}__reencrypt")
            backup = ctx.lakehouse.table(catalog, schema, f"{stored}__before_reencrypt")
            ctx.spark.sql(f"DROP TABLE IF EXISTS {staging}")
            moved.write.saveAsTable(staging.replace("`", ""))
            ctx.spark.sql(f"ALTER TABLE {storage} RENAME TO {backup}")
            ctx.spark.sql(f"ALTER TABLE {staging} RENAME TO {storage}")
            ctx.spark.sql(f"DROP TABLE {backup}")
            ctx.spark.catalog.refreshTable(target.replace("`", ""))
        after = cells_per_version(ctx.spark.table(target), columns)
        log.info("re-encrypted %s.%s.%s under DEK v%d", catalog, schema, name, version)
        return ReencryptReport(f"{catalog}.{schema}.{name}", version, before, after)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "reencrypt_columns",
        "Re-encrypt a table's cells of older DEK versions (and legacy cells) under the "
        "active version.",
    )
    parser.add_argument("--table", required=True, help="[catalog.]schema.table to re-encrypt.")
    parser.add_argument("--columns", required=True, help="Comma-separated encrypted columns.")
    add_cells_guard_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> ReencryptReport:
        return run(settings, table=args.table, columns=split_list(args.columns),
                   job_group=args.sql_job_group, allow_null_columns=args.allow_null_columns)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
