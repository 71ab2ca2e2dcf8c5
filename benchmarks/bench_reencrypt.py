"""Re-encryption after a rotation: batched (only rows of older versions) against whole table.

    python benchmarks/bench_reencrypt.py [--rows 200000] [--files 20] [--old-files 2]
                                         [--batch-rows 50000]

Builds, on local Spark in a temporary folder, a table of ``--rows`` rows (an id and one
SSN-like STRING column) in ``--files`` parquet files, the first ``--old-files`` of them
encrypted under DEK v1 and the rest under v2 (active); copies it; then runs the
``reencrypt_columns`` job on one copy with ``--mode batched`` and on the other with
``--mode whole``, and prints, per mode, the wall time, rows rewritten, commits and files
written. One run each; the figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from envelope_encryption.config import Settings
from envelope_encryption.jobs import dek_generation, kek_setup, reencrypt_columns
from envelope_encryption.jobs.common import build_context
from envelope_encryption.jobs.ingest_sink import table_location
from envelope_encryption.spark.columns import TableRef, encrypt_columns
from envelope_encryption.spark.session import local_spark_session

CATALOG = "bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--old-files", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    return parser


def _fill(spark, settings: Settings, tables: list[str], rows: int, files: int,
          old: int) -> None:
    """The same layout in each table: ``old`` files under v1, then the rest under v2."""
    per_file = rows // files
    for table in tables:
        spark.sql(f"CREATE TABLE {CATALOG}__hr.{table} (id BIGINT, ssn STRING)")
    for n in range(files):
        if n == old:
            dek_generation.run(settings, spark, schema="hr")
        data = (spark.range(n * per_file, (n + 1) * per_file, numPartitions=1)
                .selectExpr("id", "format_string('%09d', id) AS ssn"))
        with build_context(settings, spark) as ctx:
            for table in tables:  # each table's cells are bound to its name (the AAD)
                encrypt_columns(data, ["ssn"], keyring=ctx.keyring,
                                table=TableRef(CATALOG, "hr", table)
                                ).write.insertInto(f"{CATALOG}__hr.{table}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reencrypt-") as work:
        spark = local_spark_session(Path(work) / "spark", app_name="bench-reencrypt")
        settings = Settings(catalog=CATALOG, schemas=("hr",),
                            options={"local-kek-file": str(Path(work) / "kek.key")})
        kek_setup.run(settings, spark)
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {CATALOG}__hr")
        _fill(spark, settings, ["t_batched", "t_whole"], args.rows, args.files,
              args.old_files)
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        print(f"{args.rows} rows in {args.files} files, {args.old_files} file(s) "
              f"({args.rows * args.old_files // args.files} rows) under v1")
        for name in ("batched", "whole"):
            table = f"{CATALOG}__hr.t_{name}"
            folder = table_location(spark, table)
            before = {p: p.stat().st_mtime_ns for p in folder.glob("part-*")}
            started = time.perf_counter()
            report = reencrypt_columns.run(settings, spark, table=f"hr.t_{name}",
                                           columns=["ssn"], mode=name,
                                           batch_rows=args.batch_rows)
            seconds = time.perf_counter() - started
            folder = table_location(spark, table)
            written = sum(1 for p in folder.glob("part-*")
                          if before.get(p) != p.stat().st_mtime_ns)
            print(f"{name:8s} {seconds:7.1f} s  rows rewritten {report.rows_done:>9}  "
                  f"commits {report.batches:>3}  files written {written:>3}  "
                  f"cells before {report.before} after {report.after}")
        print(f"load at end {os.getloadavg()[0]:.2f}")
        spark.stop()


if __name__ == "__main__":
    main()
