"""Job ``kek_setup``: make sure the KEK, the keyring and an active DEK per schema exist.

Idempotent: a second run finds everything in place and changes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings, parse_bool
from ..kek.base import KekInfo
from .common import build_context, job_parser, log, run_main

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ..spark.sql.target import SqlOptions


@dataclass
class SetupReport:
    kek: KekInfo
    store: str
    created_deks: list[str] = field(default_factory=list)
    existing_deks: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"KEK: {self.kek.describe()}{' (created)' if self.kek.created else ''}",
                 f"keyring: {self.store}"]
        lines += [f"DEK {s}: created" for s in self.created_deks]
        lines += [f"DEK {s}: already active" for s in self.existing_deks]
        return "\n".join(lines)


def run(settings: Settings, spark: SparkSession | None = None, *,
        sql: SqlOptions | None = None) -> SetupReport:
    ctx = build_context(settings, spark)
    ctx.store.ensure()
    ctx.keyring.check_kek()  # pins the KEK the keyring recorded: a repointed one is refused
    kek = ctx.kek.ensure()
    log.info("KEK ready: %s", kek.describe())
    ctx.keyring.ensure_integrity()  # the one-time upgrade of a keyring without one
    report = SetupReport(kek=kek, store=ctx.store.description)
    for schema in settings.schemas:
        scope = settings.scope(schema)
        record, created = ctx.keyring.ensure_active(scope)
        (report.created_deks if created else report.existing_deks).append(
            f"{scope} v{record.version}"
        )
        log.info("DEK %s v%d %s", scope, record.version, "created" if created else "present")
    if sql is not None:
        # The Unity Catalog SQL layer (functions, grants): rendered per back end, see
        # docs/sql-functions.md. Locally, temporary functions over local stand-ins.
        from ..spark.sql.deploy import deploy_sql_layer

        log.info("%s", deploy_sql_layer(ctx.spark, settings, sql,
                                        databricks=ctx.lakehouse.databricks))
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "kek_setup",
        "Ensure the KEK, the keyring and an active DEK for each configured schema (idempotent).",
    )
    sql = parser.add_argument_group("Unity Catalog SQL layer (docs/sql-functions.md)")
    sql.add_argument("--sql-functions", type=parse_bool, default=False,
                     help="Also create or replace the SQL functions and grants.")
    sql.add_argument("--sql-non-member", default="null",
                     help="What non-members read: null, redacted, or ciphertext.")
    sql.add_argument("--sql-decrypt", default="strict",
                     help="strict (a bad cell fails the query) or lenient (it reads as NULL).")
    sql.add_argument("--sql-udf-wheel", default="",
                     help="Wheel the unwrap function installs (default: "
                          "/Volumes/<catalog>/<crypto schema>/packages/<wheel>).")
    return parser


def sql_options(args: argparse.Namespace) -> SqlOptions | None:
    from ..spark.sql.target import SqlOptions

    if not args.sql_functions:
        return None
    return SqlOptions(non_member=args.sql_non_member, decrypt=args.sql_decrypt,
                      udf_wheel=args.sql_udf_wheel)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(),
                    lambda args, settings: run(settings, sql=sql_options(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
