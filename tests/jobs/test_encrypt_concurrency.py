"""Two encrypt_columns runs on the same input, target and checkpoint at the same moment, as
real processes: the table holds each row once. The second run waits for the checkpoint's
lock, then finds nothing new."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from envelope_encryption.config import Settings
from envelope_encryption.jobs import kek_setup

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 2
FILES = 20


def test_concurrent_runs_on_one_checkpoint_write_each_row_once(spark, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for n in range(FILES):
        (landing / f"f{n:03d}.csv").write_text(f"id,name\n{2 * n},a{n}\n{2 * n + 1},b{n}\n")
    kek_file = tmp_path / "kek.key"
    # The KEK file first (the workers' keyrings are their own metastores' tables).
    kek_setup.run(Settings(catalog="conc", schemas=("hr",),
                           options={"local-kek-file": str(kek_file)}), spark)
    table_dir = tmp_path / "people"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    start_at = time.time() + 45.0  # time for each worker to start Spark and set up
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.jobs.encrypt_stream_worker", str(tmp_path / f"w{i}"),
             str(kek_file), str(landing), str(tmp_path / "checkpoint"), str(table_dir),
             str(start_at)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(PROCESSES)
    ]
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        outcomes += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(outcomes) == PROCESSES and not [o for o in outcomes if "error" in o], outcomes
    assert max(o["started"] for o in outcomes) < min(o["ended"] for o in outcomes), \
        f"the runs did not overlap: {outcomes}"
    # One run wrote every row; the other, after waiting for the lock, found nothing new.
    assert sorted((o["rows_written"], o["files_read"]) for o in outcomes) == [
        (0, 0), (2 * FILES, FILES)]
    stored = spark.read.parquet(str(table_dir))
    ids = [r["id"] for r in stored.select("id").collect()]
    assert sorted(ids) == list(range(2 * FILES))
