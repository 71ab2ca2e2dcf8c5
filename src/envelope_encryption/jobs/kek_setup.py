"""Job ``kek_setup``: make sure the KEK, the keyring and an active DEK per schema exist.

Idempotent: a second run finds everything in place and changes nothing.

With the SQL layer (``--sql-functions=true``) on Databricks, the unwrap function installs
this project's wheel from the crypto schema's ``packages`` volume, so the wheel must be
there before the function is created. The bundle uploads ``dist/*.whl`` with its files
(``sync.include``) and passes that folder as ``--wheel-source``; this job creates the volume,
copies the one wheel found there into it, checks it is there, and only then creates the
functions. The crypto schema is deliberately not a bundle resource: ``bundle destroy``
would drop it, and with it the keyring, so every DEK.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..cell.equality import DomainSpec, parse_domain_specs
from ..config import Settings, parse_bool
from ..errors import ConfigError
from ..identifiers import domain_scope
from ..kek.base import KekInfo
from ..keyring.domains import EqualityDomains
from ..spark.sql.target import SqlOptions
from .common import build_context, job_parser, log, run_main
from .legacy_detection import check_catalog

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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


WHEEL_PATTERN = "envelope_encryption-*.whl"


def deployed_wheel(folder: Path) -> Path:
    """The one project wheel in ``folder`` (the bundle's synced ``dist``), or ConfigError."""
    wheels = sorted(folder.glob(WHEEL_PATTERN))
    if not wheels:
        raise ConfigError(
            f"no {WHEEL_PATTERN} in {folder}: deploy the bundle first (databricks bundle "
            "deploy builds dist/ and uploads it with the bundle's files), or point "
            "--wheel-source at the folder holding the wheel"
        )
    if len(wheels) > 1:
        names = ", ".join(w.name for w in wheels)
        raise ConfigError(
            f"more than one wheel in {folder} ({names}): the artifact build clears dist/ "
            "(uv build --clear); build and deploy again"
        )
    return wheels[0]


def install_udf_wheel(spark: SparkSession, settings: Settings, sql: SqlOptions,
                      wheel_source: str) -> str | None:
    """Put the wheel where the unwrap function installs it from, and check it is there.

    Creates the crypto schema and the ``packages`` volume (the SQL layer's own ``CREATE
    ... IF NOT EXISTS`` statements, which its deployment then finds done), copies the wheel
    of ``wheel_source`` into the volume, and refuses when the wheel is missing. Returns the
    wheel's path, or None when the function installs a pinned package instead of a file.
    """
    from ..spark.sql_functions import default_udf_wheel, render_deployment

    wheel = sql.udf_wheel or default_udf_wheel(settings, sql.crypto_catalog)
    if not wheel.endswith(".whl"):
        log.info("the unwrap function installs %s: no wheel file to check", wheel)
        return None
    for statement in render_deployment(settings, sql):
        if statement.startswith(("CREATE SCHEMA IF NOT EXISTS", "CREATE VOLUME IF NOT EXISTS")):
            spark.sql(statement)
    destination = Path(wheel)
    if wheel_source:
        source = deployed_wheel(Path(wheel_source))
        if source.name != destination.name:
            raise ConfigError(
                f"the deployed wheel is {source.name} but the unwrap function installs "
                f"{destination.name}: pip refuses a wheel renamed to another version, so "
                f"deploy this version's wheel or set --sql-udf-wheel to "
                f"{destination.parent}/{source.name}"
            )
        shutil.copyfile(source, destination)
        log.info("copied %s to %s", source, destination)
    if not destination.is_file() or destination.stat().st_size == 0:
        raise ConfigError(
            f"the unwrap function installs {wheel}, which is missing: run kek_setup with "
            "--wheel-source=<folder of the deployed wheel> (the bundle job passes "
            "${workspace.file_path}/dist), or copy it there: databricks fs cp "
            f"dist/{destination.name} dbfs:{wheel}"
        )
    return wheel


def run(settings: Settings, spark: SparkSession | None = None, *,
        sql: SqlOptions | None = None, wheel_source: str = "",
        equality_domains: Mapping[str, DomainSpec] | None = None) -> SetupReport:
    with build_context(settings, spark) as ctx:
        # The original notebooks' objects, or an earlier release's keyring: refused first.
        check_catalog(ctx.spark, ctx.lakehouse, settings, ctx.store, sql=sql is not None)
        ctx.store.ensure()
        ctx.keyring.check_kek()  # pins the KEK the keyring recorded: a repointed one is refused
        with ctx.keyring.audit.attempt("kek_ensured") as facts:
            kek = ctx.kek.ensure()
            facts.update(kek_id=kek.kek_id, kek_version=kek.kek_version,
                         detail="created" if kek.created else "present")
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
        for domain in sorted(equality_domains or (sql.equality_domains if sql else {})):
            version, created = EqualityDomains(ctx.keyring, settings.catalog).ensure(domain)
            (report.created_deks if created else report.existing_deks).append(
                f"{domain_scope(settings.catalog, domain)} v{version}")
        if sql is not None:
            # The Unity Catalog SQL layer (functions, grants): rendered per back end, see
            # docs/sql-functions.md. Locally, temporary functions over local stand-ins.
            from ..spark.sql.deploy import deploy_sql_layer

            if ctx.lakehouse.databricks:
                install_udf_wheel(ctx.spark, settings, sql, wheel_source)
            else:
                log.info("local run: the SQL functions need no wheel in a volume; not copied")

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
    sql.add_argument("--sql-job-group", default=SqlOptions.job_group,
                     help="Group pattern whose members read the cells unchanged through the "
                          "masks: the principal of the jobs that rewrite or count cells "
                          "(empty: none).")
    sql.add_argument("--sql-writer-group", default="",
                     help="Group pattern granted what encrypt_<schema> needs (empty: no "
                          "writer grants).")
    sql.add_argument("--sql-crypto-catalog", default="",
                     help="Catalog for the SQL functions and the wheel's volume, apart from "
                          "the data catalog, so its catalog-level grants do not reach the "
                          "unwrap function (empty: the data catalog; docs/sql-functions.md).")
    equality = (
        ("--equality-domains",
         "Equality domains, name[:normal_form[:bits]] comma-separated (e.g. "
         "ssn:digits:64,email:casefold): their keys are created when missing, members read "
         "their deterministic cells through the masks, and the lookup functions "
         "blind_index_<domain> and deterministic_<domain> are created (docs/equality.md)."),
        ("--sql-lookup-group",
         "Group (may use {catalog}) granted EXECUTE on the lookup functions (empty: no "
         "grants)."),
    )
    for option, text in equality:
        sql.add_argument(option, default="", help=text)
    sql.add_argument("--wheel-source", default="",
                     help="Folder holding the deployed wheel (the bundle passes "
                          "${workspace.file_path}/dist); on Databricks it is copied to the "
                          "packages volume before the functions are created. Empty: the "
                          "wheel must already be there.")
    return parser


def sql_options(args: argparse.Namespace) -> SqlOptions | None:
    if not args.sql_functions:
        return None
    return SqlOptions(non_member=args.sql_non_member, decrypt=args.sql_decrypt,
                      udf_wheel=args.sql_udf_wheel, job_group=args.sql_job_group,
                      writer_group=args.sql_writer_group,
                      crypto_catalog=args.sql_crypto_catalog,
                      equality_domains=parse_domain_specs(args.equality_domains),
                      lookup_group=args.sql_lookup_group)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        build_parser(),
        lambda args, settings: run(settings, sql=sql_options(args),
                                   wheel_source=args.wheel_source,
                                   equality_domains=parse_domain_specs(args.equality_domains)),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
