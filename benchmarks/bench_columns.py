"""Throughput of DataFrame encryption/decryption against Spark's built-in AES, side by side.

    python benchmarks/bench_columns.py [--rows 1000000] [--repeat 2]

For one column of short strings (SSN-like) it times, on local Spark with a noop sink:

- baseline: the original notebooks' ``base64(aes_encrypt(col, key, 'GCM', 'DEFAULT'))`` and
  ``aes_decrypt`` (key as a literal - which also puts the key in the plan);
- this project: ``encrypt_columns`` / ``decrypt_columns`` (Arrow batches, one cipher per batch,
  header and AAD per cell, key never in the plan).

It prints rows/s (best of ``--repeat`` runs), key-service calls (unwraps, counted at the KEK
provider) and the average stored bytes per value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from envelope_encryption.kek.local import LocalKekProvider
from envelope_encryption.keyring import Keyring
from envelope_encryption.keyring.table_store import TableDekStore
from envelope_encryption.lakehouse import Lakehouse
from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
from envelope_encryption.spark.session import local_spark_session


class CountingKek(LocalKekProvider):
    """The local provider, counting unwraps: the calls a cloud key service would get."""

    unwraps = 0

    def _unwrap_key(self, wrapped, context):
        CountingKek.unwraps += 1
        return super()._unwrap_key(wrapped, context)


def best_rate(action, rows: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    work = Path(tempfile.mkdtemp(prefix="bench-columns-"))
    spark = local_spark_session(work, app_name="bench-columns", shuffle_partitions=2)
    from pyspark.sql import functions as F

    store = TableDekStore(spark, "bench", lakehouse=Lakehouse(False))
    store.ensure()
    kek = CountingKek(work / "kek.key")
    kek.ensure()
    keyring = Keyring(store, kek, "bench")
    keyring.ensure_active("bench.hr")
    ref = TableRef("bench", "hr", "people")
    keyring = Keyring(store, kek, "bench")  # an empty DEK cache, as in a new job run
    CountingKek.unwraps = 0
    key_hex = keyring.active_dek("bench.hr")[1].reveal().hex()

    source = spark.range(args.rows).select(
        F.col("id"),
        F.format_string("%03d-%02d-%04d", F.col("id") % 1000, F.col("id") % 100,
                        F.col("id") % 10000).alias("ssn"),
    )
    plain_path = str(work / "plain")
    source.write.parquet(plain_path)
    plain = spark.read.parquet(plain_path)

    def noop(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    baseline_enc = plain.select("id", F.base64(F.expr(
        f"aes_encrypt(ssn, unhex('{key_hex}'), 'GCM', 'DEFAULT')")).alias("ssn"))
    ours_enc = encrypt_columns(plain, ["ssn"], keyring=keyring, table=ref)

    results = []
    rate = best_rate(lambda: noop(baseline_enc), args.rows, args.repeat)
    results.append(("encrypt", "built-in aes_encrypt (original notebooks)", rate))
    rate = best_rate(lambda: noop(ours_enc), args.rows, args.repeat)
    results.append(("encrypt", "encrypt_columns (mapInArrow, ee1 cells)", rate))

    base_path, ours_path = str(work / "base"), str(work / "ours")
    baseline_enc.write.parquet(base_path)
    ours_enc.write.parquet(ours_path)
    base_cells, our_cells = spark.read.parquet(base_path), spark.read.parquet(ours_path)
    baseline_dec = base_cells.select("id", F.expr(
        f"CAST(aes_decrypt(unbase64(ssn), unhex('{key_hex}'), 'GCM', 'DEFAULT') AS STRING)"
    ).alias("ssn"))
    ours_dec = decrypt_columns(our_cells, ["ssn"], keyring=keyring, table=ref,
                               types={"ssn": "string"})
    rate = best_rate(lambda: noop(baseline_dec), args.rows, args.repeat)
    results.append(("decrypt", "built-in aes_decrypt (original notebooks)", rate))
    rate = best_rate(lambda: noop(ours_dec), args.rows, args.repeat)
    results.append(("decrypt", "decrypt_columns (mapInArrow, strict)", rate))

    assert ours_dec.where(F.col("ssn").isNull()).count() == 0
    size = {
        "original": base_cells.select(F.avg(F.length("ssn"))).first()[0],
        "ee1": our_cells.select(F.avg(F.length("ssn"))).first()[0],
        "plaintext": plain.select(F.avg(F.length("ssn"))).first()[0],
    }
    key_in_plan = key_hex in baseline_dec._jdf.queryExecution().toString()
    ours_key_in_plan = key_hex in ours_dec._jdf.queryExecution().toString()

    print(f"\n{args.rows:,} rows, one STRING column (SSN), local[*] on {os.cpu_count()} cores, "
          f"best of {args.repeat}, noop sink")
    print(f"{'op':8} {'method':45} {'rows/s':>12}")
    for op, method, value in results:
        print(f"{op:8} {method:45} {value:>12,.0f}")
    print(f"\nkey-service calls (unwraps) for all of the above: {CountingKek.unwraps}")
    print(f"bytes per value: plaintext {size['plaintext']:.1f}, original cell "
          f"{size['original']:.1f}, ee1 cell {size['ee1']:.1f}")
    print(f"DEK visible in the query plan: built-in {key_in_plan}, ours {ours_key_in_plan}")
    spark.stop()


if __name__ == "__main__":
    main()
