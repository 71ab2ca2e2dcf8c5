"""Job ``import_legacy``: import the original notebooks' secret (aws-sm) as version-1 DEKs.

Reads the secret the original notebooks kept (``--sm-legacy-secret``, by default
``unity_catalog/<metastore_id>/<catalog>``), and stores each schema's DEK as version 1 of
``<catalog>.<schema>`` under the configured KEK (see
:mod:`envelope_encryption.legacy.notebook_secret`). The old secret is only read. A re-run
skips the scopes it imported; a scope whose version 1 is some other key is refused, and the
job then fails (exit code 2) after importing the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Settings, actor, split_list
from ..errors import KeyringError
from ..kek import build_kek_provider
from ..keyring.base import LEGACY_KEY_TYPE
from ..keyring.factory import build_dek_store
from ..legacy.notebook_secret import ImportReport, import_legacy_secret
from .common import job_parser, run_main

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(
    settings: Settings, spark: SparkSession | None = None, *, schemas: Sequence[str] = ()
) -> ImportReport:
    """Import the legacy DEKs of ``schemas`` (all of the secret's when empty)."""
    # Loaded when the job runs, not when the CLI lists the jobs (botocore is slow to import).
    from ..kek.aws.secrets import default_legacy_secret, sm_client_from_settings

    if spark is None and settings.backend != "aws-sm":
        # Only the keyring table needs Spark; the aws-sm DEK store is a secret.
        from ..spark.session import get_spark

        spark = get_spark()
    store = build_dek_store(settings, spark)
    with build_kek_provider(settings) as kek:
        kek.ensure()
        store.ensure()
        source = settings.option("sm-legacy-secret") or default_legacy_secret(settings)
        return import_legacy_secret(sm_client_from_settings(settings), source,
                                    settings.catalog, store, kek, list(schemas) or None, actor())


def describe(report: ImportReport) -> str:
    """What the import did, one line per scope, and what is left to the operator."""
    lines = [f"imported {scope} v1 ({LEGACY_KEY_TYPE}) from {report.source}"
             for scope in report.imported]
    lines += [f"{scope}: already imported, skipped" for scope in report.already_imported]
    lines.append(f"the legacy secret {report.source} was not changed; delete it yourself once "
                 "every legacy cell has been re-encrypted")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "import_legacy",
        "Import the DEKs of the original notebooks' Secrets Manager secret as version 1 of "
        "each schema (the old secret is only read).",
    )
    parser.add_argument("--import-schemas", default="",
                        help="Comma-separated schemas to import (default: every schema in "
                             "the legacy secret).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        report = run(settings, schemas=split_list(args.import_schemas))
        if not report.ok:
            # What was imported is reported before the failure, so a re-run is understood.
            print(describe(report), flush=True)
            refused = "; ".join(f"refused {scope}: {why}" for scope, why in report.refused)
            raise KeyringError(refused)
        return describe(report)

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
