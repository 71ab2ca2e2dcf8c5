"""Job ``status``: the KEK and every DEK version per scope, and optionally which versions a
table's cells use. Shows no key material (wrapped or plain), and changes nothing."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings, split_list
from ..errors import KeyNotFound
from ..identifiers import parse_table_name
from ..spark.columns import cells_per_version
from .common import build_context, job_parser, run_main


def run(settings: Settings, spark=None, *, tables: Sequence[str] = ()) -> str:
    ctx = build_context(settings, spark)
    try:
        lines = [f"KEK: {ctx.kek.describe().describe()}"]
    except KeyNotFound as error:
        lines = [f"KEK: missing ({error})"]
    lines.append(f"keyring: {ctx.store.description}")
    records = ctx.store.current()
    if not records:
        lines.append("no DEKs yet: run the kek_setup job")
    active: dict[str, int] = {}
    for record in records:
        if record.state.value == "ENABLED":
            active[record.scope] = record.version
    for record in records:
        marker = " (active)" if active.get(record.scope) == record.version else ""
        kek = record.wrapped.kek_id + (f"@{record.wrapped.kek_version}"
                                       if record.wrapped.kek_version else "")
        lines.append(
            f"DEK {record.scope} v{record.version}{marker}: {record.state.value}, "
            f"{record.key_type}, revision {record.revision}, wrapped by {kek}, "
            f"created {record.created_at:%Y-%m-%d %H:%M} by {record.created_by}"
        )
    for table in tables:
        catalog, schema, name = parse_table_name(table, settings.catalog)
        df = ctx.spark.table(ctx.lakehouse.table(catalog, schema, name))
        lines.append(f"table {catalog}.{schema}.{name}: cells per DEK version "
                     f"{dict(sorted(cells_per_version(df).items()))}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("status", "Show the KEK, every DEK version, and versions in use.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables whose cells to count per DEK version.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        build_parser(), lambda args, settings: run(settings, tables=split_list(args.tables)),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
