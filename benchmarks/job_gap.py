"""The whole ``encrypt_columns`` job against a plain copy, before and after a change, in one run.

    python benchmarks/job_gap.py --before <git revision> [--rows 1000000] [--repeat 3]
                                 [--output benchmarks/results/job-gap-<date>.md]

One Spark session, one parquet input (``id``, ``ssn``: SSN-like strings, as in
``bench_columns.py``). The job runs with the file-source modules (``jobs/ingest_stream.py``)
of this checkout ("after") and of ``--before`` (read with ``git show``, loaded beside them:
"before"), and the plain copy job (parquet in, table out) runs between them; the three are
interleaved round by round, so that a load that changes during the run weighs on all of
them alike. Each contender's figure is its best of ``--repeat`` rounds. Every job run
writes a new target table; the output is a Markdown report with the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STREAM_MODULE = "src/envelope_encryption/jobs/ingest_stream.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--before", required=True,
                        help="Git revision whose jobs/ingest_stream.py is the 'before'.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the input.")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds (best of).")
    parser.add_argument("--output", type=Path,
                        help="Report file (default: benchmarks/results/job-gap-<date>.md).")
    return parser


def checkout_revision() -> str:
    """This checkout's commit, marked ``+changes`` when its sources differ from it."""
    git = shutil.which("git") or "git"
    head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,  # noqa: S603
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([git, "status", "--porcelain", "src"], cwd=ROOT, check=True,  # noqa: S603
                           capture_output=True, text=True).stdout.strip()
    return head + (" +changes" if dirty else "")


def load_before(revision: str):
    """``jobs/ingest_stream.py`` of ``revision``, as a module of the installed package."""
    git = shutil.which("git") or "git"
    source = subprocess.run(  # noqa: S603 - git, with a revision the user gave
        [git, "show", f"{revision}:{STREAM_MODULE}"], cwd=ROOT, check=True,
        capture_output=True, text=True).stdout
    name = "envelope_encryption.jobs._ingest_stream_before"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as copy:
        copy.write(source)
    spec = importlib.util.spec_from_file_location(name, copy.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    os.unlink(copy.name)
    return module


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        raise SystemExit("--rows and --repeat must be positive")
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import machine
    from contenders import SSN_SQL
    from pyspark.sql import functions as F

    from envelope_encryption.jobs import encrypt_columns as encrypt_job
    from envelope_encryption.jobs import ingest_stream
    from envelope_encryption.kek.local import LocalKekProvider
    from envelope_encryption.keyring import Keyring
    from envelope_encryption.keyring.table_store import TableDekStore
    from envelope_encryption.lakehouse import Lakehouse
    from envelope_encryption.spark.session import local_spark_session

    before = load_before(args.before)
    started = machine.describe()
    work = Path(tempfile.mkdtemp(prefix="job-gap-"))
    spark = local_spark_session(work, app_name="job-gap", shuffle_partitions=2)
    kek_file = work / "kek.key"
    kek = LocalKekProvider(kek_file)
    kek.ensure()
    lakehouse = Lakehouse(databricks=False)
    store = TableDekStore(spark, "bench", lakehouse=lakehouse)
    store.ensure()
    Keyring(store, kek, "bench").ensure_active("bench.hr")
    lakehouse.ensure_schema(spark, "bench", "hr", "benchmark")
    plain = work / "plain"
    spark.range(args.rows).select("id", F.expr(SSN_SQL).alias("ssn")).write.parquet(str(plain))
    arguments = ["--kek-backend", "local", "--catalog", "bench", "--schemas", "hr",
                 "--local-kek-file", str(kek_file), "--source", str(plain),
                 "--source-format", "parquet", "--columns", "ssn"]
    run_number = [0]

    def job(ingest_files) -> None:
        run_number[0] += 1
        encrypt_job.ingest_files = ingest_files
        try:
            code = encrypt_job.main([*arguments, "--target-table", f"hr.job_{run_number[0]}"])
        finally:
            encrypt_job.ingest_files = ingest_stream.ingest_files
        assert code == 0

    def copy() -> None:
        run_number[0] += 1
        spark.read.parquet(str(plain)).write.saveAsTable(f"bench__hr.copy_{run_number[0]}")

    contenders = {
        "plain copy (parquet in, table out)": copy,
        f"encrypt_columns job, before ({args.before})": lambda: job(before.ingest_files),
        f"encrypt_columns job, after ({checkout_revision()})":
            lambda: job(ingest_stream.ingest_files),
    }
    job(ingest_stream.ingest_files)  # warm-up: the keyring's tables, the JIT
    best = dict.fromkeys(contenders, float("inf"))
    for round_number in range(args.repeat):
        for name, action in contenders.items():
            t0 = time.perf_counter()
            action()
            seconds = time.perf_counter() - t0
            best[name] = min(best[name], seconds)
            print(f"round {round_number + 1}: {seconds:7.2f} s  {name}", flush=True)
    spark.stop()
    ended = machine.describe()

    copy_s = best["plain copy (parquet in, table out)"]
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    lines = [
        f"# The encrypt_columns job against a plain copy, before and after, {today}", "",
        f"Machine: {started['cores']} cores, {started['cpu']}, {started['memory_gib']} GiB, "
        f"{started['system']}, Python {started['python']}. Load average (1, 5, 15 min) at "
        f"start {started['load_average']}, at end {ended['load_average']}. Local Spark, "
        f"{args.rows:,} rows of parquet (`id`, `ssn`), the three contenders interleaved, "
        f"best of {args.repeat} rounds. Command: `python benchmarks/job_gap.py --before "
        f"{args.before} --rows {args.rows} --repeat {args.repeat}`.", "",
        "| contender | seconds | × plain copy |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.2f} | {seconds / copy_s:.2f} |"
              for name, seconds in best.items()]
    text = "\n".join(lines) + "\n"
    output = args.output or HERE / "results" / f"job-gap-{today}.md"
    output.write_text(text)
    print(text)
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
