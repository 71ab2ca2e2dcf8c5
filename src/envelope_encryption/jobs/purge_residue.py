"""Job ``purge_residue``: remove what Delta keeps of rewritten or deleted rows (VACUUM).

After a re-encryption or a destroy (docs/key-lifecycle.md, "What a destroy leaves
behind"), the old cells and the deleted keyring rows are no longer in the tables, but Delta
keeps the files that held them for time travel until ``VACUUM`` removes them. This job runs,
on every given table (default: every registered table of the catalog) and on the keyring
table, ``REORG TABLE ... APPLY (PURGE)`` (rows soft-deleted through deletion vectors are
rewritten out of the current files) and then ``VACUUM ... RETAIN <n> HOURS``.

The retention is the user's: ``--retain-hours`` has no default in the CLI. Below Delta's
default of 168 hours (7 days) Delta refuses unless its retention check is turned off; the
job refuses too unless ``--confirm-short-retention "<n> hours"`` repeats the number. It
then turns off ``spark.databricks.delta.retentionDurationCheck.enabled`` for its own
session only (a running reader or writer older than the retention may fail). After the
VACUUM no time travel reaches a version before the retention. Each table's purge is in the
audit trail (``residue_purged``).

Locally the tables are parquet without Delta history: an overwrite deletes the old files,
so there is nothing to vacuum, and the job says so and changes nothing.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Settings, parse_bool, split_list
from ..errors import ConfigError
from ..identifiers import parse_table_name
from .common import JobContext, build_context, job_parser, run_main
from .table_registry import registered_tables

log = logging.getLogger(__name__)

DELTA_DEFAULT_RETENTION_HOURS = 168
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
LOCAL_NOTHING_TO_DO = (
    "nothing to vacuum: local tables are parquet without Delta history (an overwrite "
    "deletes the files it replaces, and the keyring's purge rewrote the keyring table), so "
    "no earlier version of a table can be read back here. On Databricks this job runs "
    "REORG TABLE ... APPLY (PURGE) and VACUUM ... RETAIN <n> HOURS")


@dataclass
class PurgeResidueReport:
    """The tables purged (or, locally, why none was) and the retention used."""

    retain_hours: int
    tables: list[str] = field(default_factory=list)
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return self.note
        return (f"vacuumed {len(self.tables)} table(s) with RETAIN {self.retain_hours} HOURS: "
                f"{', '.join(self.tables)}; no time travel reaches data older than that now")


def check_retention(retain_hours: int, confirm: str) -> bool:
    """Whether the retention is below Delta's default (confirmed); ConfigError if invalid."""
    if retain_hours < 0:
        raise ConfigError("--retain-hours must be 0 or more")
    if retain_hours >= DELTA_DEFAULT_RETENTION_HOURS:
        return False
    expected = f"{retain_hours} hours"
    if confirm.strip() != expected:
        raise ConfigError(
            f"--retain-hours {retain_hours} is below Delta's default retention of "
            f"{DELTA_DEFAULT_RETENTION_HOURS} hours: Delta refuses it unless "
            f"{RETENTION_CHECK} is false, and a reader or writer running longer than that "
            f"may fail. To go ahead, repeat it: --confirm-short-retention \"{expected}\"")
    return True


def tables_to_purge(ctx: JobContext, tables: Sequence[str], *, keyring: bool) -> list[str]:
    """The given (else every registered) tables and, with ``keyring``, the keyring table,
    each as the quoted name the lakehouse uses."""
    s = ctx.settings
    names = list(tables) or registered_tables(ctx)
    quoted = [ctx.lakehouse.table(*parse_table_name(name, s.catalog)) for name in names]
    if keyring:
        quoted.append(ctx.lakehouse.table(s.catalog, s.crypto_schema, s.keyring_table))
    return list(dict.fromkeys(quoted))


def run(settings: Settings, spark=None, *, retain_hours: int, tables: Sequence[str] = (),
        confirm_short_retention: str = "", keyring: bool = True) -> PurgeResidueReport:
    short = check_retention(retain_hours, confirm_short_retention)
    with build_context(settings, spark) as ctx:
        report = PurgeResidueReport(retain_hours)
        if not ctx.lakehouse.databricks:
            report.note = LOCAL_NOTHING_TO_DO
            return report
        targets = tables_to_purge(ctx, tables, keyring=keyring)
        if short:
            ctx.spark.conf.set(RETENTION_CHECK, "false")
        try:
            for table in targets:
                with ctx.keyring.audit.attempt("residue_purged", table_name=table,
                                               detail=f"REORG APPLY (PURGE); VACUUM RETAIN "
                                                      f"{retain_hours} HOURS"):
                    ctx.spark.sql(f"REORG TABLE {table} APPLY (PURGE)")
                    ctx.spark.sql(f"VACUUM {table} RETAIN {int(retain_hours)} HOURS")
                report.tables.append(table)
                log.info("vacuumed %s (RETAIN %d HOURS)", table, retain_hours)
        finally:
            if short:
                ctx.spark.conf.unset(RETENTION_CHECK)
        return report


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("purge_residue", "VACUUM the registered tables and the keyring table "
                                         "so that no earlier version keeps old cells or "
                                         "destroyed keys (docs/key-lifecycle.md).")
    parser.add_argument("--retain-hours", type=int, required=True,
                        help="VACUUM ... RETAIN <n> HOURS: how much time travel is kept. "
                             "Below 168 needs --confirm-short-retention.")
    parser.add_argument("--confirm-short-retention", default="",
                        help='For --retain-hours below 168: "<n> hours", the same number.')
    parser.add_argument("--tables", default="",
                        help="Comma-separated tables to vacuum. Empty: every registered table "
                             "of the catalog (table_registry).")
    parser.add_argument("--keyring", type=parse_bool,
                        default=True, help="Also vacuum the keyring table.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        return str(run(settings, retain_hours=args.retain_hours, tables=split_list(args.tables),
                       confirm_short_retention=args.confirm_short_retention,
                       keyring=args.keyring))

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
