"""Job ``table_registry``: list, register or unregister the tables and columns each scope encrypts.

The registry (``<catalog>.<crypto schema>.encrypted_columns``,
:mod:`envelope_encryption.keyring.table_registry`) is filled by ``encrypt_columns``.
``retire_dek`` and ``reencrypt_columns --retire-legacy`` check the registered tables of a
scope for cells when no ``--tables`` are given. Register a table whose cells were written by
other means (``--register``, with ``--columns``), unregister a table that was dropped or
decrypted (``--unregister``; all its columns unless ``--columns``). Nothing is deleted: each
change is a new revision of the entry. See docs/registry.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from ..config import Settings, actor, split_list
from ..errors import ConfigError
from ..identifiers import domain_scope, parse_table_name
from ..keyring.table_registry import RegisteredColumn, TableRegistry
from .common import JobContext, build_context, job_parser, log, run_main


def table_registry(ctx: JobContext) -> TableRegistry:
    """The registry of the job's catalog."""
    return TableRegistry(ctx.spark, ctx.lakehouse, ctx.settings.catalog,
                         ctx.settings.crypto_schema, actor())


def registered_tables(ctx: JobContext, scope: str | None = None) -> list[str]:
    """The tables (``catalog.schema.table``) with active registered columns, of ``scope``
    (``catalog.schema``) or of every scope; empty if the registry does not exist yet."""
    return table_registry(ctx).tables(scope)


def tables_to_check(ctx: JobContext, scope: str, tables: Sequence[str], job: str) -> list[str]:
    """``tables`` if given, else the registered tables of ``scope`` (logged as such), each
    checked to exist; empty if neither (the caller refuses as it would without a registry)."""
    if tables:
        return list(tables)
    registered = registered_tables(ctx, scope)
    if registered:
        log.info("%s: no --tables given; checking the %d table(s) registered for %s: %s",
                 job, len(registered), scope, ", ".join(registered))
    for name in registered:
        if not ctx.lakehouse.table_exists(ctx.spark, *parse_table_name(name, "")):
            raise ConfigError(
                f"{name} is registered for {scope} but does not exist: unregister it "
                f"(table_registry --unregister {name}) or give --tables")
    return registered


def register_table(ctx: JobContext, table: str, columns: Sequence[str],
                   row_key_column: str = "") -> list[RegisteredColumn]:
    """Register ``columns`` of an existing ``table`` (checked to have them)."""
    catalog, schema, name = parse_table_name(table, ctx.settings.catalog)
    if not ctx.lakehouse.table_exists(ctx.spark, catalog, schema, name):
        raise ConfigError(f"table {catalog}.{schema}.{name} does not exist")
    present = set(ctx.spark.table(ctx.lakehouse.table(catalog, schema, name)).columns)
    missing = [c for c in [*columns, row_key_column] if c and c not in present]
    if missing:
        raise ConfigError(f"{catalog}.{schema}.{name} has no column(s) {', '.join(missing)}")
    return table_registry(ctx).register(catalog, schema, name, columns, row_key_column)


def run(settings: Settings, spark=None, *, register: str = "", unregister: str = "",
        columns: Sequence[str] = (), row_key_column: str = "", schema: str = "",
        include_inactive: bool = False, domain: str = "") -> list[RegisteredColumn]:
    """Apply one change (``register`` or ``unregister`` a table), or none; return the
    entries written by the change, or the current entries (of ``schema``'s scope, or of
    equality ``domain``'s: its deterministic and blind-index columns)."""
    if schema and domain:
        raise ConfigError("give --schema or --domain, not both")
    if register and unregister:
        raise ConfigError("give --register or --unregister, not both")
    if register and not columns:
        raise ConfigError("--register needs --columns")
    if row_key_column and not register:
        raise ConfigError("--row-key-column goes with --register")
    with build_context(settings, spark) as ctx:
        if register:
            return register_table(ctx, register, columns, row_key_column)
        if unregister:
            catalog, schema_name, name = parse_table_name(unregister, settings.catalog)
            return table_registry(ctx).unregister(catalog, schema_name, name, columns)
        if columns:
            raise ConfigError("--columns goes with --register or --unregister")
        scope = (settings.scope(schema) if schema
                 else domain_scope(settings.catalog, domain) if domain else None)
        return table_registry(ctx).entries(scope, include_inactive=include_inactive)


def render(entries: Sequence[RegisteredColumn], output: str) -> str:
    if output == "json":
        return json.dumps([asdict(e) for e in entries], default=str, indent=2)
    if not entries:
        return "no registered column"
    return "\n".join(
        f"{e.table_name}.{e.column_name}: scope {e.scope}, "
        + (f"rows bound by {e.row_key_column}" if e.row_key_column else "rows not bound")
        + f", {'active' if e.active else 'unregistered'} (revision {e.revision}, first "
        f"registered {e.first_registered_at}, last {e.last_registered_at} by "
        f"{e.registered_by}, changed {e.modified_at} by {e.modified_by})"
        for e in entries)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("table_registry",
                        "List, register or unregister the tables and columns each scope "
                        "encrypts.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true",
                        help="List the registered columns (what runs without an action).")
    action.add_argument("--register", default="", metavar="TABLE",
                        help="Register --columns of [catalog.]schema.table as encrypted.")
    action.add_argument("--unregister", default="", metavar="TABLE",
                        help="Unregister [catalog.]schema.table (its --columns, or all).")
    parser.add_argument("--columns", default="", help="Comma-separated encrypted columns.")
    parser.add_argument("--row-key-column", default="",
                        help="With --register: the column the table binds its cells to.")
    parser.add_argument("--schema", default="",
                        help="With --list: only the scope of this schema.")
    parser.add_argument("--domain", default="",
                        help="With --list: only the deterministic and blind-index columns "
                             "of this equality domain.")
    parser.add_argument("--all", action="store_true",
                        help="With --list: unregistered entries too.")
    parser.add_argument("--format", dest="output", default="text", choices=("text", "json"),
                        help="Output format.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        entries = run(settings, register=args.register, unregister=args.unregister,
                      columns=split_list(args.columns), row_key_column=args.row_key_column,
                      schema=args.schema, include_inactive=args.all, domain=args.domain)
        if (args.register or args.unregister) and not entries and args.output == "text":
            return "nothing to change: already registered as given"
        return render(entries, args.output)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
