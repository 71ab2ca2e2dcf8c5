"""Per-subject keys against the per-scope key: unwrap calls, memory and rows/s; prints figures.

    python benchmarks/bench_subjects.py [--subjects 100000,1000000] [--rows-per-subject 1]
                                        [--output FILE.json]

For each size (a fresh process per size, so peak memory is per size) on local Spark, one
STRING column of ``subjects * rows-per-subject`` rows, each row's subject ``id % subjects``:

- the first encryption (every subject new: salts created on the executors and inserted)
  and a second one (salts exist), written to parquet; rows/s;
- decryption with a broadcast join of the salts and with a shuffle join; rows/s;
- the same rows through ``encrypt_columns`` / ``decrypt_columns`` (the scope's DEK);
- DEK and integrity-key unwraps counted at the local KEK provider (the key-service calls);
- peak resident memory of the driver, the JVM and the Python workers; the subject table's
  bytes on disk per subject.

Not a test: it asserts nothing about speed. A smoke run is in tests/benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError("--subjects needs positive counts, e.g. 1000000")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--subjects", type=_sizes, default=[100_000, 1_000_000],
                        help="Comma-separated subject counts.")
    parser.add_argument("--rows-per-subject", type=int, default=1,
                        help="Rows per subject (1: every row derives a key of its own).")
    parser.add_argument("--output", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--minimal", action="store_true",
                        help="Only the first encryption and a decryption with the join Spark "
                             "chooses: unwraps and memory at sizes too slow for every run.")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)  # child process
    return parser


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet"))


def run_size(subjects: int, per_subject: int, work: Path, minimal: bool = False) -> dict:
    """Every figure at one size (see the module's doc)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import machine
    from contenders import CountingUnwraps

    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.subjects import SubjectStore
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.columns import TableRef, decrypt_columns, encrypt_columns
    from envelope_encryption.spark.session import local_spark_session
    from envelope_encryption.spark.subject_columns import (
        decrypt_subject_columns,
        encrypt_subject_columns,
    )

    rows = subjects * per_subject
    unwraps = CountingUnwraps()
    figures: dict = {"subjects": subjects, "rows": rows, "rates": {}, "seconds": {},
                     "calls": {}}
    with machine.MemorySampler() as sampler:
        spark = local_spark_session(work, app_name="bench-subjects", shuffle_partitions=2)
        sampler.watch_heap(spark)
        lakehouse = Lakehouse(databricks=False)
        store = TableDekStore(spark, "bench", lakehouse=lakehouse)
        store.ensure()
        kek = LocalKekProvider(work / "kek.key")
        kek.ensure()
        Keyring(store, kek, "bench").ensure_active("bench.crm")
        table = TableRef("bench", "crm", "orders")
        subject_table = SubjectStore(spark, lakehouse, "bench", "crypto")
        source = spark.range(rows).selectExpr(
            "id", f"id % {subjects} AS customer_id", "concat('name-', id) AS name")
        source.write.parquet(str(work / "plain"))
        plain = spark.read.parquet(str(work / "plain"))

        def measure(name: str, action) -> None:
            seconds = _timed(action)
            figures["seconds"][name] = round(seconds, 2)
            figures["rates"][name] = round(rows / seconds)
            print(f"   {rows / seconds:>12,.0f} rows/s  {seconds:>8.1f} s  {name}", flush=True)

        unwraps.reset()
        keyring = Keyring(store, kek, "bench")  # a new process: nothing unwrapped
        runs = ((1, "first (every subject new)"), (2, "again (salts exist)"))
        for run, label in runs[:1] if minimal else runs:
            def encrypt(run=run) -> None:
                encrypt_subject_columns(plain, ["name"], keyring=keyring, table=table,
                                        subject_column="customer_id", subjects=subject_table
                                        ).write.mode("overwrite").parquet(
                                            str(work / f"subj{run}"))
            measure(f"encrypt per subject, {label}", encrypt)
        figures["calls"]["per-subject encrypt, all runs: DEK unwraps"] = unwraps.calls
        figures["calls"]["per-subject encrypt, all runs: integrity-key unwraps"] = \
            unwraps.integrity_calls

        cells = spark.read.parquet(str(work / "subj1"))
        joins = (("chosen by Spark", None),) if minimal else (("broadcast", True),
                                                              ("shuffle", False))
        for join, broadcast in joins:
            unwraps.reset()
            keyring = Keyring(store, kek, "bench")

            def decrypt(broadcast=broadcast, keyring=keyring) -> None:
                out = decrypt_subject_columns(cells, ["name"], keyring=keyring, table=table,
                                              subject_column="customer_id",
                                              subjects=subject_table, broadcast=broadcast)
                bad = out.where("name IS NULL OR name <> concat('name-', id)").count()
                if bad:
                    raise AssertionError(f"{bad} row(s) did not decrypt to their plaintext")
            measure(f"decrypt per subject, {join} join (and check)", decrypt)
            figures["calls"][f"per-subject decrypt, {join}: DEK unwraps"] = unwraps.calls

        if minimal:
            return _finish(figures, sampler, spark, work, subjects)
        unwraps.reset()
        keyring = Keyring(store, kek, "bench")
        measure("encrypt per scope (encrypt_columns)", lambda: encrypt_columns(
            plain, ["name"], keyring=keyring, table=table).write.parquet(str(work / "scope")))
        scoped = spark.read.parquet(str(work / "scope"))

        def decrypt_scope() -> None:
            out = decrypt_columns(scoped, ["name"], keyring=keyring, table=table)
            if out.where("name <> concat('name-', id)").count():
                raise AssertionError("per-scope decrypt returned a wrong value")
        measure("decrypt per scope (decrypt_columns, and check)", decrypt_scope)
        figures["calls"]["per-scope encrypt + decrypt: DEK unwraps"] = unwraps.calls
        return _finish(figures, sampler, spark, work, subjects)


def _finish(figures: dict, sampler, spark, work: Path, subjects: int) -> dict:
    """The subject table's size on disk and the memory peaks, once the runs are done."""
    import machine

    warehouse = next(work.rglob("dek_subjects"), None)
    if warehouse is not None:
        figures["subject_table_bytes_per_subject"] = round(_disk_bytes(warehouse) / subjects, 1)
    spark.stop()
    figures["memory"] = {"jvm_heap": sampler.heap}
    figures["memory"].update({
        "driver_peak_mib": round(machine.peak_kb() / 1024, 1),
        "jvm_peak_rss_mib": round(sampler.peaks["jvm"] / 1024, 1),
        "python_worker_peak_mib": round(sampler.peaks["python_worker"] / 1024, 1),
    })
    return figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.one_size is not None:
        with tempfile.TemporaryDirectory(prefix="bench-subjects-") as work:
            figures = run_size(args.one_size, args.rows_per_subject, Path(work), args.minimal)
        args.figures.write_text(json.dumps(figures))
        return 0
    import machine

    report = {"machine_start": machine.describe(), "sizes": []}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    for subjects in args.subjects:
        print(f"-- {subjects:,} subjects, {args.rows_per_subject} row(s) each", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-subjects-") as work:
            out = Path(work) / "figures.json"
            subprocess.run(  # noqa: S603 - this script, with arguments it made
                [sys.executable, str(Path(__file__).resolve()), "--one-size", str(subjects),
                 "--rows-per-subject", str(args.rows_per_subject), "--figures", str(out),
                 *(["--minimal"] if args.minimal else [])],
                check=True, env=env)
            figures = json.loads(out.read_text())
        report["sizes"].append(figures)
        print(json.dumps({k: figures[k] for k in ("calls", "memory")}, indent=2), flush=True)
        if "subject_table_bytes_per_subject" in figures:
            print(f"   subject table on disk: {figures['subject_table_bytes_per_subject']} "
                  "bytes per subject", flush=True)
    report["machine_end"] = machine.describe()
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
