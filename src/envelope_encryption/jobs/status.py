"""Job ``status``: the inventory of the KEK, every DEK version per scope, and optionally which
versions a table's cells use. Shows no key material (wrapped or plain), and changes no key
and no data table. Each DEK version shows the values encrypted under it, from the usage
table, and the usage limits (docs/usage-limits.md).

Every DEK record is shown as the keyring verifies it (docs/keyring-integrity.md): a scope
whose records do not verify is listed with the problem instead of with states that an edit
of the keyring could have set. ``--format json`` prints the same inventory as one JSON
document (for dashboards, alerts and scripts); ``text`` is for people. ``--write-inventory
true`` also appends the inventory as one snapshot to the tables ``key_inventory``,
``cell_inventory``, ``usage_inventory`` and ``domain_cell_inventory`` of the crypto schema,
which the key management dashboard reads (``jobs/inventory_tables.py``, docs/dashboard.md).

Counting a masked table needs a member of the job group (``--sql-job-group``); anyone else
reads the masks' output, so the job refuses rather than report zero cells."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError, EnvelopeError, KeyNotFound
from ..keyring.base import DekRecord
from ..spark.columns import cells_per_version
from ..spark.legacy_cells import legacy_cells_per_version
from ..spark.sql.target import SqlOptions
from .common import JobContext, build_context, job_parser, run_main
from .domain_columns import DomainColumnCells, domain_column_cells, registered_domain_scopes
from .guarded_reads import add_cells_guard_arguments, read_cells
from .inventory_tables import KEY_FIELDS, InventoryTables
from .table_registry import registered_tables
from .usage_limits import UsageSummary, usage_summary

OUTPUT_FORMATS = ("text", "json")
# Version of the JSON document's layout; bumped when a field changes meaning or goes away.
INVENTORY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DekVersionInfo:
    version: int
    state: str
    active: bool
    key_type: str
    revision: int
    kek_id: str
    kek_version: str
    created_at: str
    created_by: str
    modified_at: str
    modified_by: str
    # Values encrypted under this version, from the usage table (None: not counted there).
    encryptions: int | None = None

    @staticmethod
    def of(record: DekRecord, active: bool, encryptions: int | None = None) -> DekVersionInfo:
        return DekVersionInfo(
            encryptions=encryptions,
            version=record.version, state=record.state.value, active=active,
            key_type=record.key_type, revision=record.revision,
            kek_id=record.wrapped.kek_id, kek_version=record.wrapped.kek_version or "",
            created_at=record.created_at.isoformat(), created_by=record.created_by,
            modified_at=record.modified_at.isoformat(), modified_by=record.modified_by,
        )


@dataclass(frozen=True)
class ScopeInfo:
    scope: str
    # Empty when every record of the scope verified; else why not (and versions is empty).
    problem: str = ""
    versions: list[DekVersionInfo] = field(default_factory=list)


@dataclass(frozen=True)
class TableInfo:
    table: str
    cells_per_version: dict[int, int]
    # Header-less cells of the original notebooks, per imported legacy DEK version that opens
    # them: how far a migration is (docs/migration.md). Empty without legacy DEKs.
    legacy_cells_per_version: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    kek: str
    kek_problem: str
    keyring: str
    scopes: list[ScopeInfo]
    tables: list[TableInfo]
    # The usage limits and where encryptions are counted (docs/usage-limits.md).
    usage: UsageSummary | None = None
    # Deterministic cells and blind indexes per domain key version, per registered column of
    # each equality domain (docs/equality.md).
    domain_columns: list[DomainColumnCells] = field(default_factory=list)

    def to_json(self) -> str:
        document: dict[str, Any] = {"schema_version": INVENTORY_SCHEMA_VERSION, **asdict(self)}
        for table in document["tables"]:
            # JSON object keys are strings; versions stay numbers in a list of pairs instead.
            for key in ("cells_per_version", "legacy_cells_per_version"):
                table[key] = [{"version": v, "cells": n} for v, n in sorted(table[key].items())]
        for column in document["domain_columns"]:
            column["cells_per_version"] = [{"version": v, "cells": n} for v, n in
                                           sorted(column["cells_per_version"].items())]
        return json.dumps(document, indent=2, sort_keys=True)

    def to_text(self) -> str:
        kek = f"missing ({self.kek_problem})" if self.kek_problem else self.kek
        lines = [f"KEK: {kek}", f"keyring: {self.keyring}"]
        if self.usage is not None:
            lines.append(self.usage.to_text())
        if not self.scopes:
            lines.append("no DEKs yet: run the kek_setup job")
        for scope in self.scopes:
            if scope.problem:
                lines.append(f"DEKs of {scope.scope}: NOT VERIFIED ({scope.problem})")
            for v in scope.versions:
                kek = v.kek_id + (f"@{v.kek_version}" if v.kek_version else "")
                lines.append(
                    f"DEK {scope.scope} v{v.version}{' (active)' if v.active else ''}: "
                    f"{v.state}, {v.key_type}, revision {v.revision}, wrapped by {kek}, "
                    f"created {v.created_at[:16].replace('T', ' ')} by {v.created_by}"
                    + ("" if v.encryptions is None or self.usage is None else
                       f", {v.encryptions} encryption(s) of {self.usage.hard_limit}")
                )
        for table in self.tables:
            legacy = (f"; legacy cells per legacy DEK version "
                      f"{dict(sorted(table.legacy_cells_per_version.items()))}"
                      if table.legacy_cells_per_version else "")
            lines.append(f"table {table.table}: cells per DEK version "
                         f"{dict(sorted(table.cells_per_version.items()))}{legacy}")
        for column in self.domain_columns:
            lines.append(f"column {column.table}.{column.column} of {column.scope}: values per "
                         f"domain key version {dict(sorted(column.cells_per_version.items()))}")
        return "\n".join(lines)


def key_rows(found: Inventory, snapshot_time: datetime,
             run_id: str) -> Iterator[dict[str, Any]]:
    """One row per verified DEK version; one row with the problem per unverified scope."""
    empty = dict.fromkeys(KEY_FIELDS)
    for scope in found.scopes:
        if scope.problem:
            yield {**empty, "snapshot_time": snapshot_time, "run_id": run_id,
                   "scope": scope.scope, "problem": scope.problem}
        for v in scope.versions:
            # A record read back from a Spark table has a naive local time (how PySpark
            # returns TIMESTAMP); astimezone reads a naive time as local, an aware one as is.
            created = datetime.fromisoformat(v.created_at).astimezone(timezone.utc)
            yield {"snapshot_time": snapshot_time, "run_id": run_id, "scope": scope.scope,
                   "version": v.version, "state": v.state, "active": v.active,
                   "key_type": v.key_type, "kek_id": v.kek_id, "kek_version": v.kek_version,
                   "created_at": created, "created_by": v.created_by,
                   "age_days": max(0, (snapshot_time - created).days), "problem": ""}


def cell_rows(found: Inventory, snapshot_time: datetime,
              run_id: str) -> Iterator[dict[str, Any]]:
    """One row per table and DEK version with cells, legacy versions flagged."""
    for table in found.tables:
        for legacy, counts in ((False, table.cells_per_version),
                               (True, table.legacy_cells_per_version)):
            for version, cells in sorted(counts.items()):
                yield {"snapshot_time": snapshot_time, "run_id": run_id,
                       "table_name": table.table, "version": version, "legacy": legacy,
                       "cells": cells}


def domain_cell_rows(found: Inventory, snapshot_time: datetime,
                     run_id: str) -> Iterator[dict[str, Any]]:
    """One row per registered column of an equality domain and domain key version."""
    for column in found.domain_columns:
        for version, cells in sorted(column.cells_per_version.items()):
            yield {"snapshot_time": snapshot_time, "run_id": run_id, "scope": column.scope,
                   "table_name": column.table, "column_name": column.column,
                   "version": version, "cells": cells}


def usage_rows(found: Inventory, snapshot_time: datetime,
               run_id: str) -> Iterator[dict[str, Any]]:
    """One row per verified DEK version: its encryptions against the limits (none without
    a usage table)."""
    if found.usage is None:
        return
    for scope in found.scopes:
        for v in scope.versions:
            if v.encryptions is not None:
                yield {"snapshot_time": snapshot_time, "run_id": run_id, "scope": scope.scope,
                       "version": v.version, "state": v.state, "active": v.active,
                       "encryptions": v.encryptions, "soft_limit": found.usage.soft_limit,
                       "hard_limit": found.usage.hard_limit}


def _scope_info(ctx: JobContext, scope: str,
                used: dict[tuple[str, int], int] | None) -> ScopeInfo:
    try:
        records = ctx.keyring.versions(scope)
    except EnvelopeError as error:
        # Shown, not raised: status is what an operator runs to find out what is wrong.
        return ScopeInfo(scope, problem=str(error))
    enabled = [r.version for r in records if r.encrypts]
    active = max(enabled) if enabled else None
    return ScopeInfo(scope, versions=[
        DekVersionInfo.of(r, r.version == active,
                          None if used is None else used.get((scope, r.version), 0))
        for r in records])


def inventory(ctx: JobContext, tables: Sequence[str] = (), *,
              job_group: str = SqlOptions.job_group,
              allow_null_columns: bool = False) -> Inventory:
    """What the deployment holds: KEK, keyring, every scope's verified versions, and the
    cells per DEK version of ``tables``."""
    try:
        kek, kek_problem = ctx.kek.describe().describe(), ""
    except KeyNotFound as error:
        kek, kek_problem = "", str(error)
    scopes = sorted({r.scope for r in ctx.store.current()})
    table_infos = []
    for table in tables:
        # Counts read through masks would be wrong (zero cells of a version in use): refused.
        ref, df = read_cells(ctx, table, job_group=job_group,
                             allow_null_columns=allow_null_columns)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        table_infos.append(TableInfo(
            f"{ref.catalog}.{ref.schema}.{ref.table}", cells_per_version(df),
            legacy_cells_per_version(df, strings, ctx.keyring, ref.scope)))
    usage, used = usage_summary(ctx)
    counted = {t.table for t in table_infos}
    domain_infos = [
        column for scope in registered_domain_scopes(ctx)
        for column in domain_column_cells(ctx, scope, (), job_group=job_group,
                                          allow_null_columns=allow_null_columns)
        if column.table in counted]
    return Inventory(kek, kek_problem, ctx.store.description,
                     [_scope_info(ctx, scope, used) for scope in scopes], table_infos, usage,
                     domain_infos)


def run(settings: Settings, spark=None, *, tables: Sequence[str] = (),
        job_group: str = SqlOptions.job_group, allow_null_columns: bool = False,
        output_format: str = "text", write_inventory: bool = False) -> str:
    """The inventory as ``output_format``; with ``write_inventory``, also appended as one
    snapshot to the inventory tables of the crypto schema."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown --format {output_format!r}: use {' or '.join(OUTPUT_FORMATS)}")
    with build_context(settings, spark) as ctx:
        # Without --tables: every table the registry knows (docs/registry.md).
        found = inventory(ctx, tables or registered_tables(ctx), job_group=job_group,
                          allow_null_columns=allow_null_columns)
        if write_inventory:
            now, run_id = datetime.now(timezone.utc), settings.option("run-id")
            InventoryTables(ctx.spark, ctx.lakehouse, settings.catalog,
                            settings.crypto_schema).append(
                key_rows(found, now, run_id), cell_rows(found, now, run_id),
                usage_rows(found, now, run_id), domain_cell_rows(found, now, run_id))
    return found.to_json() if output_format == "json" else found.to_text()


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("status", "Show the KEK, every DEK version, and versions in use.")
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables whose cells to count per DEK version "
                             "(empty: every table of the registry).")
    parser.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS,
                        default="text",
                        help="text for people; json for scripts and dashboards (one document).")
    parser.add_argument("--write-inventory", type=parse_bool, default=False,
                        help="Also append the inventory as one snapshot to the tables "
                             "key_inventory, cell_inventory and usage_inventory of the "
                             "crypto schema (true/false; the bundle's status job passes "
                             "true, for the dashboard).")
    add_cells_guard_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        build_parser(),
        lambda args, settings: run(settings, tables=split_list(args.tables),
                                   job_group=args.sql_job_group,
                                   allow_null_columns=args.allow_null_columns,
                                   output_format=args.output_format,
                                   write_inventory=args.write_inventory),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
