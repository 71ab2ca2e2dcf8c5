"""SQL decrypt path vs the original notebooks' decrypt, on the same data, on local Spark.

Both read one STRING column of ``--rows`` rows from a parquet table and decrypt it in SQL
with Spark's native ``aes_decrypt``, the key coming from a scalar subquery that calls the
unwrap function (here the local stand-in of the Unity Catalog Python function):

- **project**: ``decrypt_<schema>`` as rendered for Databricks (cells ``ee1:<v>:<type>:…``,
  version read per cell, AAD = header + place, key map per query, membership checked once);
- **original**: the notebooks' ``decrypt``: ``try_aes_decrypt(unbase64(v), <latest DEK>)``
  on ``base64(aes_encrypt(v, k, 'GCM'))`` cells, no AAD, falling back to the input. Its
  ``is_account_group_member`` check is hoisted into a scalar subquery here too: on
  Databricks it is a constant per query, and the local Python stand-in evaluated per row
  would make the original look slower than it is.

A ``plain`` scan of the same column (no decryption) is the floor. Output: rows/s per path
(best of ``--repeat`` runs, noop sink) and unwrap calls per query.

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

    group = "bench.hr.crypto.user"
    env = LocalSqlEnvironment(spark, settings, groups=[group]).install()
    unwrap = env.target.function("unwrap_key")
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY FUNCTION original_decrypt(value STRING) RETURNS STRING
        RETURN CASE
          WHEN (SELECT is_account_group_member('{group}')) THEN coalesce(
            CAST(try_aes_decrypt(unbase64(value),
              (SELECT element_at({unwrap}(key_alias, array(key_version), array(wrapped_key),
                                          array(kek_id), array(kek_version)), 1)
               FROM bench__crypto.dek_keyring WHERE key_alias = 'bench.hr'
               ORDER BY key_version DESC LIMIT 1), 'GCM', 'DEFAULT') AS STRING),
            value)
          ELSE value
        END""")
    queries = {
        "plain scan": "SELECT ssn FROM bench__hr.people",
        "original": "SELECT original_decrypt(ssn_original) AS ssn FROM bench__hr.people",
        "project": f"SELECT {env.decrypt_function('hr')}(ssn, 'people', 'ssn') AS ssn "
                   "FROM bench__hr.people",
    }
    check = spark.sql(
        f"SELECT count_if({env.decrypt_function('hr')}(ssn, 'people', 'ssn') <=> "
        "original_decrypt(ssn_original)) AS same FROM bench__hr.people").first().same
    assert check == args.rows, f"the two paths disagree on {args.rows - check} rows"

    if os.environ.get("BENCH_EXPLAIN"):
        spark.sql(queries["project"]).explain("formatted")
    results = {}
    for name, query in queries.items():
        best = float("inf")
        before = env.unwrap_calls
        for _ in range(args.repeat):
            t = time.perf_counter()
            spark.sql(query).write.format("noop").mode("overwrite").save()
            best = min(best, time.perf_counter() - t)
        results[name] = (args.rows / best, (env.unwrap_calls - before) / args.repeat)
    print(f"\n{'path':<12} {'rows/s':>12} {'unwrap calls/query':>20}")
    for name, (rate, calls) in results.items():
        print(f"{name:<12} {rate:>12,.0f} {calls:>20.1f}")
    ratio = results["project"][0] / results["original"][0]
    print(f"\nproject / original throughput: {ratio:.2f}x  ({args.rows:,} rows, "
          f"{args.partitions} partitions, best of {args.repeat})")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
