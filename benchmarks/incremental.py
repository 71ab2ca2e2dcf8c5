"""The scheduled re-run: a landing folder of already-ingested files and one new file.

``encrypt_columns`` reads file sources by checkpoint (``jobs/ingest_stream.py``), so a re-run
should read only the files its checkpoint has not seen, however many were ingested before.
This measures it: ``files`` CSV files are landed and ingested by a first run, one more file
is landed, and the job runs again. The files each run read are counted from the checkpoint's
own source log (``<checkpoint>/sources/0/<batch>``: one JSON entry per file a micro-batch
read), and the rows the re-run appended are counted in the target table.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

ROWS_PER_FILE = 10
SCHEMA_DDL = "id BIGINT, ssn STRING"


def _land(folder: Path, index: int) -> None:
    with open(folder / f"part-{index:05d}.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["id", "ssn"])
        for row in range(ROWS_PER_FILE):
            number = index * ROWS_PER_FILE + row
            writer.writerow([number, f"{number % 900 + 100:03d}-{number % 90 + 10:02d}-"
                                     f"{number % 9000 + 1000:04d}"])


def files_per_batch(checkpoint: Path) -> dict[int, int]:
    """Files read by each micro-batch, from the file source's log in the checkpoint.

    Each batch file starts with a version line ("v1"); every further line is one file entry.
    A compacted log file (``<n>.compact``) carries the entries of every batch up to ``n``, so
    only plain batch files are counted, and the log is kept uncompacted by the caller.
    """
    log = checkpoint / "sources" / "0"
    counts = {}
    for entry in log.iterdir():
        if entry.name.isdigit():
            lines = entry.read_text(encoding="utf-8").splitlines()[1:]
            counts[int(entry.name)] = sum(1 for line in lines if json.loads(line).get("path"))
    return counts


def rerun_after_history(spark, work: Path, files: int, job_args: list[str], encrypt_main,
                        target: str, stored_as: str) -> dict:
    """Land ``files`` files, ingest them, land one more, run again; what each run read.

    ``target`` is the job's ``--target-table``, ``stored_as`` the name Spark stores it under.
    """
    landing, checkpoint = work / "landing", work / "landing_checkpoint"
    landing.mkdir()
    for index in range(files):
        _land(landing, index)
    # Spark compacts the file source log every 10 batches by default; one large compaction
    # interval keeps one log file per batch so each run's files can be counted.
    spark.conf.set("spark.sql.streaming.fileSource.log.compactInterval", "100000")
    arguments = [*job_args, "--source", str(landing), "--source-format", "csv",
                 "--source-schema", SCHEMA_DDL, "--csv-line-separator", "crlf",
                 "--checkpoint-location", str(checkpoint), "--target-table", target,
                 "--columns", "ssn"]

    def run() -> tuple[float, dict[int, int], int]:
        before = files_per_batch(checkpoint) if (checkpoint / "sources").exists() else {}
        started = time.perf_counter()
        assert encrypt_main(arguments) == 0
        seconds = time.perf_counter() - started
        after = files_per_batch(checkpoint)
        new = {batch: n for batch, n in after.items() if batch not in before}
        rows = spark.table(stored_as).count()
        return seconds, new, rows

    first_s, first_batches, first_rows = run()
    _land(landing, files)
    rerun_s, rerun_batches, rerun_rows = run()
    figures = {
        "landed_files_before_rerun": files,
        "first_run_s": first_s,
        "first_run_files_read": sum(first_batches.values()),
        "rerun_s": rerun_s,
        "rerun_files_read": sum(rerun_batches.values()),
        "rerun_rows_appended": rerun_rows - first_rows,
        "rows_per_file": ROWS_PER_FILE,
    }
    assert figures["first_run_files_read"] == files, figures
    assert first_rows == files * ROWS_PER_FILE, (first_rows, figures)
    return figures
