"""Job ``retire_dek``: take a DEK version out of use, refused while cells still use it.

The tables given are scanned for cells of that version (for an imported legacy DEK, for
header-less legacy values too); if any is found the job refuses, unless ``--force`` (those
cells then become unreadable). Re-encrypt them first with ``reencrypt_columns``. Retiring
records a new revision; the wrapped key is not deleted. The same as ``dek_state --to
retired`` (which also makes versions decrypt-only, enables and destroys them).

Without ``--tables`` the job checks the tables registered for the scope (``table_registry``,
filled by ``encrypt_columns``), and says so in its log. With neither ``--tables`` nor a
registered table it refuses, unless ``--force``: "no table" would count zero cells and retire
a version still in use. The tables given must include at least one table of the scope, and
should be every table that holds its cells: the job can check only what it is shown.

``--domain`` instead of ``--schema`` retires a version of an equality domain's key, counted
in the domain's registered columns (and those of ``--tables``; :mod:`.domain_columns`).

A masked table is counted only by a member of the job group (``--sql-job-group``): anyone
else reads the masks' output and would count zero cells of a version still in use, so the
job refuses before retiring anything.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..config import Settings, parse_bool, split_list
from ..keyring.base import DekRecord
from ..spark.sql.target import SqlOptions
from .common import build_context, job_parser, run_main
from .dek_state import stored_cells
from .domain_columns import add_scope_arguments, key_scope
from .guarded_reads import add_cells_guard_arguments


def run(
    settings: Settings, spark=None, *, schema: str = "", version: int,
    tables: Sequence[str], force: bool = False, job_group: str = SqlOptions.job_group,
    allow_null_columns: bool = False, domain: str = "",
) -> DekRecord:
    """Retire a version of ``schema``'s DEK or of ``domain``'s key."""
    scope = key_scope(settings, schema, domain)
    with build_context(settings, spark) as ctx:
        in_use = stored_cells(ctx, scope, version, tables, force=force, job="retire_dek",
                              job_group=job_group, allow_null_columns=allow_null_columns)
        return ctx.keyring.retire(scope, version, in_use=in_use > 0, force=force)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("retire_dek", "Retire a DEK version no cell uses any more.")
    add_scope_arguments(parser, "Schema of the DEK scope (or --domain).")
    parser.add_argument("--version", type=int, required=True, help="DEK version to retire.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables to check for cells of that version: every "
                             "table holding cells of the scope. Empty: the tables registered "
                             "for the scope (table_registry). Required unless --force or a "
                             "table is registered.")
    parser.add_argument("--force", type=parse_bool, default=False,
                        help="Retire even if cells still use it (they become unreadable).")
    add_cells_guard_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        record = run(settings, schema=args.schema, domain=args.domain, version=args.version,
                     tables=split_list(args.tables), force=args.force,
                     job_group=args.sql_job_group, allow_null_columns=args.allow_null_columns)
        return f"DEK {record.scope} v{record.version} is {record.state.value}"

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
