"""What every job does: parse parameters, set up logging, build the layers, report errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings, actor, add_settings_arguments, settings_from_args
from ..errors import ConfigError, EnvelopeError
from ..kek import KekProvider, build_kek_provider
from ..keyring import DekStore, Keyring, build_dek_store
from ..keyring.audit import AuditLog, TableAuditLog, audit_table_name
from ..keyring.cache import cache_from_settings
from ..lakehouse import Lakehouse, running_on_databricks
from ..logs import PACKAGE_LOGGER, guard_key_loggers, setup_logging

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(PACKAGE_LOGGER)

# The exit status of a job that stops on one of the project's errors.
EXIT_ERROR = 2


@dataclass
class JobContext:
    """The pieces a job works with, built once from its settings."""

    settings: Settings
    spark: SparkSession
    lakehouse: Lakehouse
    kek: KekProvider
    store: DekStore
    keyring: Keyring

    def close(self) -> None:
        """Release the KEK provider's clients (idempotent). The Spark session stays."""
        self.kek.close()

    def __enter__(self) -> JobContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def build_audit_log(settings: Settings, spark: SparkSession, lakehouse: Lakehouse) -> AuditLog:
    """Where the job records key operations: the audit table unless ``--audit-table none``;
    each event carries the job run id (``--run-id``)."""
    run_id = settings.option("run-id")
    table = audit_table_name(settings.option("audit-table"))
    if table is None:
        return AuditLog(actor(), run_id)
    return TableAuditLog(spark, lakehouse, settings.catalog, settings.crypto_schema, table,
                         actor(), run_id)


def build_context(settings: Settings, spark: SparkSession | None = None) -> JobContext:
    """The pieces of a job, built from ``settings`` by the package's factories.

    Use it as a context manager (``with build_context(settings) as ctx:``) so the KEK
    provider's clients are closed when the job ends. The keyring gets a fresh DEK cache:
    each DEK version is unwrapped once per job; the keyring records every change in the
    audit trail (:func:`build_audit_log`).
    """
    from ..spark.session import get_spark

    guard_key_loggers()  # also when a notebook calls a job's run() without run_main
    spark = spark or get_spark()
    lakehouse = Lakehouse.detect()
    kek = build_kek_provider(settings)
    store = build_dek_store(settings, spark, lakehouse)
    audit = build_audit_log(settings, spark, lakehouse)
    keyring = Keyring(store, kek, actor(), cache_from_settings(settings), audit)
    return JobContext(settings, spark, lakehouse, kek, store, keyring)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_settings_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="Log debug details.")
    return parser


def refuse_local_backend_on_databricks(settings: Settings) -> Settings:
    """Stop a job or notebook that would use the local back end on Databricks.

    The local KEK is a file in the working folder of one machine: on a workspace that folder
    is throwaway, so DEKs wrapped by it, and every cell encrypted under them, would be lost.
    """
    if settings.backend == "local" and running_on_databricks():
        raise ConfigError(
            "the local back end is for local runs only: on Databricks its KEK file lives in a "
            "throwaway folder and data encrypted under it could never be decrypted again. "
            "Deploy and run a cloud target (databricks bundle deploy -t aws-kms, aws-sm or "
            "azure), or set kek_backend to aws-kms, aws-sm or azure"
        )
    return settings


def run_main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, Settings], object],
    argv: Sequence[str] | None,
) -> int:
    """Parse, run, and turn the project's errors into one clear line and exit status 2.

    An error ends the process (``SystemExit``): a ``python_wheel_task`` calls the entry point
    and ignores what it returns, so only the process status can fail the run. Success
    returns 0.
    """
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        settings = refuse_local_backend_on_databricks(settings_from_args(args))
        result = run(args, settings)
    except EnvelopeError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_ERROR) from None
    if result is not None:
        print(result)
    return 0
