"""What counting encryptions per DEK version costs (docs/usage-limits.md).

    python benchmarks/bench_usage_count.py [--rows 1000000] [--repeat 3]

On local Spark, over a parquet input of ``--rows`` rows with two STRING columns to encrypt
(a tenth of them NULL) and the ``_source_file`` column of a file source, it prints (best of
``--repeat``, seconds and rows/s):

- the aggregation ``encrypt_columns`` already runs over each micro-batch (rows, files);
- the same aggregation with the non-NULL counts of the columns folded in (what the job runs);
- the non-NULL counts as a pass of their own (a filtered micro-batch or a table source);
- encrypting the input (``encrypt_columns`` to Spark's ``noop`` sink), for scale;
- one ``UsageGuard.reserve`` against the local usage table (read the total, append a row),
  the fixed cost per micro-batch, in milliseconds.

Figures only: nothing is asserted, and a loaded machine gives slower ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def best(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the input.")
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many runs.")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark.sql import functions as F

    from envelope_encryption.config import Settings
    from envelope_encryption.jobs.common import build_context
    from envelope_encryption.jobs.kek_setup import run as kek_setup
    from envelope_encryption.jobs.usage_limits import usage_guard
    from envelope_encryption.spark.columns import TableRef, encrypt_columns
    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.usage_count import (
        non_null_counts,
        values_in,
        values_to_encrypt,
    )

    columns = ["name", "email"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        spark = local_spark_session(work / "spark", app_name="bench-usage-count")
        settings = Settings(catalog="bench", schemas=("hr",),
                            options={"local-kek-file": str(work / "kek.key")})
        kek_setup(settings, spark)
        source = str(work / "input")
        (spark.range(args.rows)
         .select(F.col("id"),
                 F.when(F.col("id") % 10 == 0, None).otherwise(
                     F.concat(F.lit("name-"), F.col("id").cast("string"))).alias("name"),
                 F.concat(F.col("id").cast("string"), F.lit("@example.com")).alias("email"),
                 F.concat(F.lit("file:/landing/part-"), (F.col("id") % 50).cast("string"))
                 .alias("_source_file"))
         .write.parquet(source))
        batch = spark.read.parquet(source)
        existing = [F.count(F.lit(1)).alias("rows"),
                    F.collect_set("_source_file").alias("files")]
        figures = {
            "existing aggregation (rows, files)":
                best(args.repeat, lambda: batch.agg(*existing).first()),
            "same aggregation + non-NULL counts (the job)":
                best(args.repeat, lambda: values_in(
                    batch.agg(*existing, *non_null_counts(columns)).first(), columns)),
            "non-NULL counts, a pass of their own":
                best(args.repeat, lambda: values_to_encrypt(batch, columns)),
        }
        with build_context(settings, spark) as ctx:
            ref = TableRef("bench", "hr", "people")
            figures["encrypt_columns to noop, for scale"] = best(args.repeat, lambda: (
                encrypt_columns(batch, columns, keyring=ctx.keyring, table=ref)
                .write.format("noop").mode("overwrite").save()))
            guard = usage_guard(ctx)
            guard.reserve(ref.scope, "bench.hr.people", 1)  # creates the table
            reserve = best(max(args.repeat, 5),
                           lambda: guard.reserve(ref.scope, "bench.hr.people", 1000))
        spark.stop()

    print(f"{args.rows} rows, 2 columns to encrypt ({values_count(args.rows)} non-NULL "
          "values), best of", args.repeat)
    for name, seconds in figures.items():
        print(f"  {name:48s} {seconds:7.2f} s  {args.rows / seconds / 1e6:6.2f} M rows/s")
    print(f"  {'UsageGuard.reserve (read total, append row)':48s} {reserve * 1000:7.0f} ms "
          "per micro-batch")
    return 0


def values_count(rows: int) -> int:
    """Non-NULL values of the two columns: every tenth name is NULL."""
    return rows - (rows + 9) // 10 + rows


if __name__ == "__main__":
    raise SystemExit(main())
