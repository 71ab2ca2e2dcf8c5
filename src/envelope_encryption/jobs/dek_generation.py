"""Job ``dek_generation``: a new DEK version for ``<catalog>.<schema>`` (or, with ``--domain``,
a new key version of an equality domain).

The new version becomes the active one for encryption; older versions keep decrypting.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Settings
from ..keyring.base import DekRecord
from .common import build_context, job_parser, log, run_main
from .domain_columns import add_scope_arguments, key_scope

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(settings: Settings, spark: SparkSession | None = None, schema: str = "",
        domain: str = "") -> DekRecord:
    """A new version of ``schema``'s DEK, or of ``domain``'s key (docs/equality.md)."""
    scope = key_scope(settings, schema, domain, required=False)
    with build_context(settings, spark) as ctx:
        record = ctx.keyring.create_version(scope)
        log.info("DEK %s v%d is now active", scope, record.version)
        return record


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "dek_generation",
        "Create a new DEK version for a schema; it becomes active, older ones keep decrypting.",
    )
    add_scope_arguments(parser, "Schema that gets a new DEK version (default: first of "
                                "--schemas).", required=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        record = run(settings, schema=args.schema, domain=args.domain)
        return f"DEK {record.scope} v{record.version} created and active"

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
