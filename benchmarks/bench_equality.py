"""Joins on encrypted columns, side by side in one run (docs/equality.md).

    python benchmarks/bench_equality.py [--rows 1000000] [--repeat 3]

Two tables of ``--rows`` rows each share half of their SSN-like keys. The same inner join
is timed (best of ``--repeat``, noop sink, local Spark) on:

- the plaintext column (the baseline);
- deterministic cells (``ed1``) of one equality domain, made beforehand;
- 64-bit blind indexes beside randomized cells, made beforehand;
- randomized cells, decrypted on both sides and then joined (what a team does today).

It prints rows/s (of the two inputs together) and the ratios to the plaintext join, checks
that every contender finds the same number of pairs, counts key-service calls (KEK unwraps
during the timed runs: the DEKs are cached, and unwrapped again only when the cache's
maximum age passes during a long run), and writes the table to
``<output>/equality-<YYYY-MM-DD>.md`` with the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# One distinct SSN-like value per key below 10^9: the join finds exactly the shared keys.
SSN = "format_string('%03d-%02d-%04d', k div 1000000, (k div 10000) % 100, k % 10000)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of each table.")
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many runs.")
    parser.add_argument("--output", type=Path, default=HERE / "results",
                        help="Folder for equality-<date>.md.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import machine
    from contenders import best_seconds

    started = machine.describe()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import functions as F

    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.domains import EqualityDomains
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
    from envelope_encryption.spark.equality_columns import (
        BlindIndex,
        add_blind_indexes,
        encrypt_deterministic_columns,
    )
    from envelope_encryption.spark.session import local_spark_session

    with tempfile.TemporaryDirectory(prefix="bench-eq-") as folder:
        work = Path(folder)
        spark = local_spark_session(work, app_name="bench-equality", shuffle_partitions=4)
        store = TableDekStore(spark, "bench", lakehouse=Lakehouse(databricks=False))
        store.ensure()
        kek = LocalKekProvider(work / "kek.key")
        kek.ensure()
        keyring = Keyring(store, kek, "bench")
        keyring.ensure_active("bench.hr")
        keyring.ensure_active("bench.finance")
        domains = EqualityDomains(keyring, "bench")
        domains.ensure("ssn")
        unwraps = [0]
        unwrap = kek.unwrap

        def counted(wrapped, context):
            unwraps[0] += 1
            return unwrap(wrapped, context)

        kek.unwrap = counted
        rows = args.rows
        # Left keys 0..rows-1, right keys rows/2..3*rows/2-1: half of each side matches.
        left = spark.range(rows).select(F.col("id"), F.expr(SSN.replace("k", "id")).alias("ssn"))
        right = spark.range(rows // 2, rows // 2 + rows).select(
            (F.col("id") + 10 * rows).alias("pay_id"),
            F.expr(SSN.replace("k", "id")).alias("ssn"))
        forms = {}
        for name, df, schema in (("left", left, "hr"), ("right", right, "finance")):
            ref = TableRef("bench", schema, name)
            indexed = add_blind_indexes(df, [BlindIndex("ssn", "ssn", bits=64)],
                                        domains=domains)
            randomized = encrypt_columns(indexed, ["ssn"], keyring=keyring, table=ref)
            deterministic = encrypt_deterministic_columns(df, {"ssn": "ssn"}, domains=domains)
            for form, frame in (("plain", df), ("det", deterministic), ("bidx", randomized)):
                frame.write.parquet(str(work / f"{name}_{form}"))
                forms[(name, form)] = spark.read.parquet(str(work / f"{name}_{form}"))

        def plain_join(column: str, form: str):
            return forms[("left", form)].join(forms[("right", form)], column)

        def decrypt_then_join():
            opened = [decrypt_columns(forms[(name, "bidx")].drop("ssn_bidx"), ["ssn"],
                                      keyring=keyring, table=TableRef("bench", schema, name),
                                      types={"ssn": "string"})
                      for name, schema in (("left", "hr"), ("right", "finance"))]
            return opened[0].join(opened[1], "ssn")

        contenders = {
            "join on plaintext": lambda: plain_join("ssn", "plain"),
            "join on deterministic cells (ed1)": lambda: plain_join("ssn", "det"),
            "join on 64-bit blind indexes (bi1)": lambda: plain_join("ssn_bidx", "bidx"),
            "decrypt both sides, then join": decrypt_then_join,
        }
        counts = {name: make().count() for name, make in contenders.items()}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"the joins disagree: {counts}")
        rates, calls = {}, {}
        for name, make in contenders.items():
            before = unwraps[0]
            seconds = best_seconds(
                lambda make=make: make().write.format("noop").mode("overwrite").save(),
                args.repeat)
            rates[name] = 2 * rows / seconds
            calls[name] = unwraps[0] - before
        spark.stop()

    end = machine.describe()
    base = rates["join on plaintext"]
    lines = [
        f"# Joins on encrypted columns, {dt.date.today().isoformat()}", "",
        f"Machine: {started['cores']} cores, {started['cpu']}, {started['memory_gib']} GiB. "
        f"Load average (1, 5, 15 min) at start {started['load_average']}, at end "
        f"{end['load_average']}. Local Spark, {rows:,} rows per table, "
        f"{counts['join on plaintext']:,} pairs, noop sink, best of {args.repeat}. Command: "
        f"`python benchmarks/bench_equality.py --rows {rows} --repeat {args.repeat}`.", "",
        "| contender | input rows/s | vs plaintext join | KEK unwraps (timed runs) |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {rate:,.0f} | {rate / base:.2f} | {calls[name]} |"
          for name, rate in rates.items()],
    ]
    text = "\n".join(lines) + "\n"
    args.output.mkdir(parents=True, exist_ok=True)
    target = args.output / f"equality-{dt.date.today().isoformat()}.md"
    target.write_text(text)
    print(text)
    print(f"written: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
