"""Job ``retire_dek``: take a DEK version out of use, refused while cells still use it.

The tables given are scanned for cells of that version; if any is found the job refuses,
unless ``--force`` (those cells then become unreadable). Re-encrypt them first with
``reencrypt_columns``. Retiring records a new revision; the wrapped key is not deleted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings, parse_bool, split_list
from ..identifiers import parse_table_name
from ..keyring.base import DekRecord
from ..spark.columns import cells_per_version
from .common import build_context, job_parser, log, run_main


def run(
    settings: Settings, spark=None, *, schema: str, version: int,
    tables: Sequence[str], force: bool = False,
) -> DekRecord:
    ctx = build_context(settings, spark)
    scope = settings.scope(schema)
    in_use = 0
    for table in tables:
        catalog, table_schema, name = parse_table_name(table, settings.catalog)
        df = ctx.spark.table(ctx.lakehouse.table(catalog, table_schema, name))
        found = cells_per_version(df).get(version, 0)
        if found:
            log.info("%s.%s.%s holds %d cell(s) of %s v%d", catalog, table_schema, name,
                     found, scope, version)
        in_use += found
    return ctx.keyring.retire(scope, version, in_use=in_use > 0, force=force)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("retire_dek", "Retire a DEK version no cell uses any more.")
    parser.add_argument("--schema", required=True, help="Schema of the DEK scope.")
    parser.add_argument("--version", type=int, required=True, help="DEK version to retire.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables to check for cells of that version.")
    parser.add_argument("--force", type=parse_bool, default=False,
                        help="Retire even if cells still use it (they become unreadable).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        record = run(settings, schema=args.schema, version=args.version,
                     tables=split_list(args.tables), force=args.force)
        return f"DEK {record.scope} v{record.version} is {record.state.value}"

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
