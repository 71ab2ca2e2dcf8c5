"""Job ``kek_setup``: make sure the KEK, the keyring and an active DEK per schema exist.

Idempotent: a second run finds everything in place and changes nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from ..kek.base import KekInfo
from .common import build_context, job_parser, log, run_main

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


def run(settings: Settings, spark: SparkSession | None = None) -> SetupReport:
    ctx = build_context(settings, spark)
    kek = ctx.kek.ensure()
    log.info("KEK ready: %s", kek.describe())
    ctx.store.ensure()
    report = SetupReport(kek=kek, store=ctx.store.description)
    for schema in settings.schemas:
        scope = settings.scope(schema)
        record, created = ctx.keyring.ensure_active(scope)
        (report.created_deks if created else report.existing_deks).append(
            f"{scope} v{record.version}"
        )
        log.info("DEK %s v%d %s", scope, record.version, "created" if created else "present")
    return report


def build_parser() -> argparse.ArgumentParser:
    return job_parser(
        "kek_setup",
        "Ensure the KEK, the keyring and an active DEK for each configured schema (idempotent).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), lambda args, settings: run(settings), argv)


if __name__ == "__main__":
    raise SystemExit(main())
