"""SQL decrypt paths side by side, on the same data, on local Spark.

All read one STRING column of ``--rows`` rows from a parquet table (the contenders of
``contenders.sql_contenders``, checked to return the same plaintext for every row first):

- **project**: ``decrypt_<schema>`` as rendered for Databricks: the batch Python function
  ``decrypt_cells`` (here its local stand-in, an Arrow UDF running the same handler) opens
  each batch with one AES-GCM cipher per DEK version, the DEKs unwrapped inside it;
- **previous native mask**: the mask before that: Spark's native ``aes_decrypt`` per cell
  with a key map ``unwrap_key`` returns once per query (``sql_native_mask.py``);
- **original**: the notebooks' ``decrypt``: ``try_aes_decrypt(unbase64(v), <latest DEK>)``
  on ``base64(aes_encrypt(v, k, 'GCM'))`` cells, no AAD, falling back to the input; its
  ``is_account_group_member`` check hoisted into a scalar subquery, as on Databricks it is
  a constant per query.

A ``plain`` scan of the same column is the floor. Output: rows/s per path (best of
``--repeat`` runs, noop sink), ``unwrap_key`` records per query and the key-service calls
``decrypt_cells`` made.

    .venv/bin/python benchmarks/bench_sql.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from contenders import GROUP, SQL_NATIVE, SQL_ORIGINAL, SQL_PROJECT, sql_contenders
    from pyspark.sql import functions as F

    from envelope_encryption.config import Settings
    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.columns import TableRef, encrypt_columns
    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.sql.local_unity_catalog import LocalSqlEnvironment

    work = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    spark = local_spark_session(work, app_name="bench-sql", shuffle_partitions=args.partitions)
    spark.sparkContext.setLogLevel("ERROR")
    settings = Settings(backend="local", catalog="bench", schemas=("hr",),
                        options={"local-kek-file": str(work / "kek.key")})
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, "bench", lakehouse=lakehouse)
    store.ensure()
    kek = LocalKekProvider(work / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "bench")
    keyring.ensure_active("bench.hr")
    ref = TableRef("bench", "hr", "people")

    started = time.perf_counter()
    source = spark.range(args.rows, numPartitions=args.partitions).select(
        F.col("id"),
        F.format_string("%03d-%02d-%04d", F.col("id") % 1000, F.col("id") % 100,
                        F.col("id") % 10000).alias("ssn"),
    )
    encrypted = encrypt_columns(source, ["ssn"], keyring=keyring, table=ref)
    # The original format, made with the same DEK. A benchmark-only throw-away key; the key
    # travels as a query parameter of this one setup statement.
    key = keyring.dek("bench.hr", 1).reveal()
    lakehouse.ensure_schema(spark, "bench", "hr", "benchmark")
    encrypted.join(
        spark.sql("SELECT id, base64(aes_encrypt(format_string('%03d-%02d-%04d', id % 1000, "
                  "id % 100, id % 10000), :k, 'GCM', 'DEFAULT')) AS ssn_original "
                  f"FROM range({args.rows})", args={"k": key}),
        on="id",
    ).write.mode("overwrite").saveAsTable("bench__hr.people")
    print(f"data: {args.rows:,} rows encrypted both ways in "
          f"{time.perf_counter() - started:.1f} s", flush=True)

    env = LocalSqlEnvironment(spark, settings, groups=[GROUP]).install()
    queries = {"plain scan": "SELECT ssn FROM bench__hr.people",
               **sql_contenders(spark, env, args.rows)}

    if os.environ.get("BENCH_EXPLAIN"):
        spark.sql(queries["project"]).explain("formatted")
    results = {}
    for name, query in queries.items():
        best = float("inf")
        before, unwraps_before = env.unwrap_calls, len(env.kek_unwraps)
        for _ in range(args.repeat):
            t = time.perf_counter()
            spark.sql(query).write.format("noop").mode("overwrite").save()
            best = min(best, time.perf_counter() - t)
        results[name] = (args.rows / best, (env.unwrap_calls - before) / args.repeat,
                         len(env.kek_unwraps) - unwraps_before)
    print(f"\n{'path':<78} {'rows/s':>11} {'unwrap_key/query':>17} {'KEK unwraps':>12}")
    for name, (rate, calls, unwraps) in results.items():
        print(f"{name:<78} {rate:>11,.0f} {calls:>17.1f} {unwraps:>12}")
    for name in (SQL_PROJECT, SQL_NATIVE):
        print(f"{name} / original: {results[name][0] / results[SQL_ORIGINAL][0]:.2f}x")
    print(f"project / previous native mask: "
          f"{results[SQL_PROJECT][0] / results[SQL_NATIVE][0]:.2f}x  ({args.rows:,} rows, "
          f"{args.partitions} partitions, best of {args.repeat}; KEK unwraps: key-service "
          "calls made by decrypt_cells over all runs, one per worker process and version)")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
