"""Job ``rotate_kek``: a new KEK version, then every DEK re-wrapped under it and verified.

Safe to re-run: when some DEKs are still wrapped by an older KEK version (an earlier run
stopped part-way), the job does not rotate again but finishes the re-wrap.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import Settings, parse_bool
from ..keyring import RewrapReport
from .common import build_context, job_parser, log, run_main

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run(
    settings: Settings, spark: SparkSession | None = None, rewrap_only: bool = False
) -> RewrapReport:
    with build_context(settings, spark) as ctx:
        ctx.keyring.check_kek()  # pins the KEK, so a KMS rotation records its new key first
        current = ctx.kek.describe()
        records = ctx.store.current()
        stale = [
            r for r in records
            if (r.wrapped.kek_id, r.wrapped.kek_version) != (current.kek_id, current.kek_version)
        ]
        if stale:
            log.info("%d DEK(s) not yet under %s: finishing an earlier rotation",
                     len(stale), current.describe())
        elif not rewrap_only:
            with ctx.keyring.audit.attempt(
                    "kek_rotated", kek_id=current.kek_id,
                    detail=f"from version {current.kek_version or '-'}") as facts:
                rotated = ctx.kek.rotate()
                facts.update(kek_id=rotated.kek_id, kek_version=rotated.kek_version)
            log.info("KEK rotated: %s", rotated.describe())
        report = ctx.keyring.rewrap_all()
        log.info("re-wrapped %d DEK(s); %d already current",
                 len(report.rewrapped), len(report.already_current))
        return report


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser(
        "rotate_kek",
        "Rotate the KEK and re-wrap every DEK under the new version, verifying each one.",
    )
    parser.add_argument("--rewrap-only", type=parse_bool, default=False,
                        help="Do not rotate; only re-wrap DEKs not under the current KEK.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go(args: argparse.Namespace, settings: Settings) -> str:
        report = run(settings, rewrap_only=args.rewrap_only)
        return (f"KEK: {report.kek.describe()}\nre-wrapped: {len(report.rewrapped)}; "
                f"already current: {len(report.already_current)}")

    return run_main(build_parser(), go, argv)


if __name__ == "__main__":
    raise SystemExit(main())
