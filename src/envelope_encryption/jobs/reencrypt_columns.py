"""Job ``reencrypt_columns``: move a table's cells to the active DEK version.

Cells of older versions (and, for scopes with an imported legacy DEK, the original
notebooks' header-less cells) are decrypted and encrypted again under the active version;
cells already under it are kept. The table is replaced in one step: on Databricks an
``INSERT OVERWRITE`` (one Delta commit); locally a staging table swapped in by rename, the
old table dropped only after the swap. A cell that does not decrypt fails the job before
anything is replaced.

Run it as a principal that is NOT a member of ``<catalog>.<schema>.crypto.user``: a member
reading a masked table sees plaintext, which this job then refuses as "not a cell".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Settings, split_list
from ..errors import ConfigError
from ..identifiers import parse_table_name, quote, validate_identifier
from ..spark.columns import TableRef, cells_per_version, reencrypt_columns
from .common import build_context, job_parser, log, run_main


@dataclass
class ReencryptReport:
    table: str
    active_version: int
    before: dict[int, int]
    after: dict[int, int]

    def __str__(self) -> str:
        return (f"{self.table}: cells per DEK version before {self.before}, after {self.after} "
                f"(active v{self.active_version})")


def run(settings: Settings, spark=None, *, table: str, columns: Sequence[str]) -> ReencryptReport:
    ctx = build_context(settings, spark)
    catalog, schema, name = parse_table_name(table, settings.catalog)
    ref = TableRef(catalog, schema, name)
    columns = [validate_identifier(c, "column") for c in columns]
    if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
        raise ConfigError(f"table {catalog}.{schema}.{name} does not exist")
    target = ctx.lakehouse.table(catalog, schema, name)
    current = ctx.spark.table(target)
    before = cells_per_version(current, columns)
    version, _ = ctx.keyring.active_dek(ref.scope)
    moved = reencrypt_columns(current, columns, keyring=ctx.keyring, table=ref)

    if ctx.lakehouse.databricks:
        view = f"_reencrypt_{name}"
        moved.createOrReplaceTempView(view)
        ctx.spark.sql(f"INSERT OVERWRITE {target} SELECT * FROM {quote(view)}")
    else:
        # Parquet cannot overwrite a table it is reading: stage, then swap by rename.
        staging = ctx.lakehouse.table(catalog, schema, f"{name}__reencrypt")
        backup = ctx.lakehouse.table(catalog, schema, f"{name}__before_reencrypt")
        ctx.spark.sql(f"DROP TABLE IF EXISTS {staging}")
        moved.write.saveAsTable(staging.replace("`", ""))
        ctx.spark.sql(f"ALTER TABLE {target} RENAME TO {backup}")
        ctx.spark.sql(f"ALTER TABLE {staging} RENAME TO {target}")
        ctx.spark.sql(f"DROP TABLE {backup}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> ReencryptReport:
        return run(settings, table=args.table, columns=split_list(args.columns))

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
