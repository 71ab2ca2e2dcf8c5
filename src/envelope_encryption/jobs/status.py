"""Job ``status``: the KEK and every DEK version per scope, and optionally which versions a
table's cells use. Shows no key material (wrapped or plain), and changes nothing.

Counting a masked table needs a member of the job group (``--sql-job-group``); anyone else
reads the masks' output, so the job refuses rather than report zero cells."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings, split_list
from ..errors import KeyNotFound
from ..spark.columns import cells_per_version
from ..spark.sql.target import SqlOptions
from .common import build_context, job_parser, run_main
from .guarded_reads import add_cells_guard_arguments, read_cells


def run(settings: Settings, spark=None, *, tables: Sequence[str] = (),
        job_group: str = SqlOptions.job_group, allow_null_columns: bool = False) -> str:
    with build_context(settings, spark) as ctx:
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
            # Counts read through masks would be wrong (zero cells of a version in use): refused.
            ref, df = read_cells(ctx, table, job_group=job_group,
                                 allow_null_columns=allow_null_columns)
            lines.append(f"table {ref.catalog}.{ref.schema}.{ref.table}: cells per DEK version "
                         f"{dict(sorted(cells_per_version(df).items()))}")
        return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("status", "Show the KEK, every DEK version, and versions in use.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables whose cells to count per DEK version.")
    add_cells_guard_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        build_parser(),
        lambda args, settings: run(settings, tables=split_list(args.tables),
                                   job_group=args.sql_job_group,
                                   allow_null_columns=args.allow_null_columns),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
